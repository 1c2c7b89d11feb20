"""The notification outbox (kanade.backend.store.deliveries), on real SQLite files: a due
delivery is claimed by one sender only, each outcome moves it along the status table
(delivered, due again after its backoff, failed when out of attempts), and an operator may
retry a failed one."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from kanade.backend.store import deliveries, notify_events, webhooks
from kanade.backend.store.deliveries import Outcome
from kanade.core.notify import events as ev
from kanade.core.notify.retry import RetryPolicy
from notify_rows import T0, add_webhook

POLICY = RetryPolicy(base_s=10, cap_s=60, max_attempts=3)
HOLD = timedelta(seconds=30)


def _one_pending(engine: Engine) -> str:
    with engine.begin() as conn:
        add_webhook(conn, "ops")
        event = ev.agent_quarantined(pc_id="pc-1", version="2", error=None, at=T0)
        notify_events.record_events(conn, [event], T0)
        notify_events.fan_out(conn, T0, limit=10)
        page = deliveries.list_deliveries(conn, webhook_id="ops", status=None, limit=5, offset=0)
    return str(page.items[0]["delivery_id"])


def _outcome(did: str, attempt: int, code: int | None, at: float = 0) -> Outcome:
    error = None if code is not None and code < 300 else f"HTTP {code}"
    return Outcome(did, attempt, T0 + timedelta(seconds=at), code, error, 12.5)


def test_a_due_delivery_is_claimed_once(engine: Engine) -> None:
    did = _one_pending(engine)
    with engine.begin() as conn:
        [claim] = deliveries.claim_due(conn, T0, 10, HOLD)
        assert (claim.delivery_id, claim.attempt, claim.url) == (did, 1, "http://127.0.0.1:9/hook")
        assert claim.secret == "k" * 32
        # Not due again until the hold has passed (a sender that died mid-request).
        assert deliveries.claim_due(conn, T0 + timedelta(seconds=29), 10, HOLD) == []
        [again] = deliveries.claim_due(conn, T0 + HOLD, 10, HOLD)
        assert again.attempt == 2


def test_failures_back_off_then_fail_and_an_operator_retries(engine: Engine) -> None:
    did = _one_pending(engine)
    with engine.begin() as conn:
        deliveries.claim_due(conn, T0, 10, HOLD)
        deliveries.record_outcomes(conn, [_outcome(did, 1, 503)], T0, POLICY)
        row = deliveries.get_delivery(conn, did)
        assert row is not None and row["status"] == "pending"
        assert row["next_attempt_at"] == T0 + timedelta(seconds=10)
        assert row["last_status_code"] == 503 and row["last_error"] == "HTTP 503"
        for n, at in ((2, 10), (3, 30)):
            [c] = deliveries.claim_due(conn, T0 + timedelta(seconds=at), 10, HOLD)
            assert c.attempt == n
            deliveries.record_outcomes(conn, [_outcome(did, n, 500)], T0 + timedelta(seconds=at),
                                       POLICY)  # fmt: skip
        row = deliveries.get_delivery(conn, did)
        assert row is not None and row["status"] == "failed" and row["next_attempt_at"] is None
        assert [a["status_code"] for a in row["attempt_log"]] == [503, 500, 500]
        assert deliveries.claim_due(conn, T0 + timedelta(days=1), 10, HOLD) == []
        assert deliveries.retry(conn, did, T0 + timedelta(days=1)) == "failed"
        assert deliveries.retry(conn, did, T0 + timedelta(days=1)) == "pending"  # no-op now
        [c] = deliveries.claim_due(conn, T0 + timedelta(days=1), 10, HOLD)
        assert c.attempt == 1
        deliveries.record_outcomes(conn, [_outcome(did, 1, 204)], T0 + timedelta(days=1), POLICY)
        row = deliveries.get_delivery(conn, did)
        assert row is not None and row["status"] == "delivered"
        assert row["delivered_at"] == T0 + timedelta(days=1)
        assert deliveries.retry(conn, did, T0) == "delivered"  # a delivered one stays
        summary = deliveries.summary_by_webhook(conn)["ops"]
        assert summary["counts"] == {"delivered": 1}
        assert summary["last"]["status_code"] == 204


def test_a_stale_outcome_changes_nothing(engine: Engine) -> None:
    did = _one_pending(engine)
    with engine.begin() as conn:
        deliveries.claim_due(conn, T0, 10, HOLD)
        deliveries.record_outcomes(conn, [_outcome(did, 7, 200)], T0, POLICY)  # not its attempt
        row = deliveries.get_delivery(conn, did)
        assert row is not None and row["status"] == "pending"


def test_a_disabled_webhook_holds_its_deliveries_and_a_deleted_one_drops_them(
    engine: Engine,
) -> None:
    did = _one_pending(engine)
    with engine.begin() as conn:
        webhooks.update_webhook(conn, "ops", {"enabled": False}, now=T0, by="ops")
        assert deliveries.claim_due(conn, T0, 10, HOLD) == []
        webhooks.update_webhook(conn, "ops", {"enabled": True}, now=T0, by="ops")
        assert [c.delivery_id for c in deliveries.claim_due(conn, T0, 10, HOLD)] == [did]
        assert webhooks.delete_webhook(conn, "ops")
        assert deliveries.get_delivery(conn, did) is None
        assert deliveries.backlog(conn) == 0
