"""Notifications end to end in-process (docs/notifications.md): a real backend on a real
broker and database, and a real HTTP receiver on loopback.

* each event kind reaches the receiver once, signed (HMAC-SHA256 over timestamp and body),
  with its idempotency key in the body and the headers;
* a failing receiver gets the delivery again with exponential backoff until it answers 2xx;
  out of attempts it is ``failed`` until an operator retries it;
* bad configuration is refused naming the field, answers never echo a secret, and every
  change is audited;
* a webhook comes back with its secret when the database is wiped (KV ``kanade_state``).

Each runs on SQLite and on PostgreSQL (SPEC §9).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Connection

from kanade.backend.inprocess import InProcessBackend, in_process_backend
from kanade.backend.settings import Settings
from kanade.backend.store import agents, projection_state, scheduling
from kanade.backend.store.scheduling import DecisionRow
from kanade.backend.store.tables import rollouts
from kanade.backend.workers.notify.detector import FLOOR_KEY
from kanade.bus import Bus
from kanade.core import subjects
from kanade.core.instants import system_clock
from kanade.core.models.wire import Heartbeat, encode
from notify_rows import failed_exec
from pgdb import wipe_store
from polling import eventually as shared_eventually
from secured import authority_dir
from webhook_receiver import Receiver, receiving

pytestmark = pytest.mark.stores
eventually = functools.partial(shared_eventually, timeout=20.0)
SECRET = "s3cret-" + "x" * 25
ALL = ["exec.failed", "schedule.skipped", "schedule.missed", "agent.offline", "rollout.halted",
       "agent.quarantined"]  # fmt: skip
BASE_S = 0.2


def settings_for(nats_url: str, db: str) -> Settings:
    return Settings.from_db_arg(
        authority_dir=authority_dir(),
        nats_url=nats_url,
        db=str(db),
        heartbeat_flush_s=0.05,
        notify_scan_s=0.1,
        notify_retry_base_s=BASE_S,
        notify_retry_max_s=1.0,
        notify_max_attempts=5,
        notify_timeout_s=3.0,
    )


async def notifying(b: InProcessBackend) -> None:
    """Wait until the detector runs: a fact from before its first pass on a new database is
    history, never told (docs/notifications.md, "Detection")."""

    async def floor() -> bool:
        found = await b.services.db.read(lambda c: projection_state.get_state(c, FLOOR_KEY))
        return found is not None

    await eventually(floor, what="the notification detector running")


@pytest.fixture
async def backend(nats_url: str, store_url: str) -> AsyncIterator[InProcessBackend]:
    async with in_process_backend(settings_for(nats_url, store_url)) as b:
        await notifying(b)
        yield b


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from receiving()


async def _add(b: InProcessBackend, **body: Any) -> dict[str, Any]:
    r = await b.client.post("/api/notify/webhooks", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _halted_rollout(conn: Connection) -> None:
    now = system_clock()
    conn.execute(
        insert(rollouts).values(
            rollout_id="r1", exec_id="r1", job_id="flaky", version="1", status="halted",
            halt_on_failure_rate=0.2, current_wave=1, wave_count=2, spec={}, command="{}",
            starting_deadline_s=None, settle_after_s=0.0, created_by="ops", created_at=now,
            updated_at=now, finished_at=None, reason="wave 0 (pcs): failure rate 50 %",
        )
    )  # fmt: skip


async def test_each_event_kind_is_delivered_once_and_signed(
    backend: InProcessBackend, bus: Bus, receiver: Receiver
) -> None:
    await _add(backend, id="ops", url=receiver.url, secret=SECRET, events=ALL,
               offline_after="1m")  # fmt: skip
    now = system_clock()

    def facts(conn: Connection) -> None:
        failed_exec(conn, "e1", now)
        scheduling.record_decisions(
            conn,
            [DecisionRow("nightly", "nightly@1", now, "skipped", "frozen", "the fleet is frozen"),
             DecisionRow("nightly", "nightly@0", now, "missed", "catchup_skip", "1")],
            now,
        )  # fmt: skip
        # Silent since just under a minute: it crosses the webhook's 1m in a moment.
        agents.upsert_agents(
            conn,
            [{"pc_id": "quiet", "hostname": "quiet", "groups": [],
              "last_seen": now - timedelta(seconds=59), "first_seen": now}],
        )  # fmt: skip
        _halted_rollout(conn)

    await backend.services.db.write(facts)
    # The quarantine comes in a heartbeat (self-update, SPEC §3.8).
    hb = Heartbeat.model_validate(
        {"pc_id": "pc-q", "agent_version": "1.0", "hostname": "pc-q", "os_family": "linux",
         "sent_at": now.isoformat(),
         "update": {"state": "quarantined", "quarantined": ["2.0"], "error": "did not start"}}
    )  # fmt: skip
    await bus.nc.publish(subjects.heartbeat_subject("pc-q"), encode(hb))

    def every_kind() -> set[str] | None:
        kinds = {r.event for r in receiver.accepted()}
        return kinds if kinds >= set(ALL) else None

    await eventually(every_kind, what="every event kind delivered")
    # A sentinel fact after all of them: by the time it arrives the detector has read the
    # earlier facts again and again (its overlap); none of them may come twice.
    await backend.services.db.write(lambda c: failed_exec(c, "e2", system_clock()))
    await eventually(lambda: len(receiver.accepted()) == len(ALL) + 1, what="the sentinel")

    got = receiver.accepted()
    assert Counter(r.event for r in got) == Counter([*ALL, "exec.failed"])
    assert len({r.key for r in got}) == len(got)  # one delivery per notification
    for r in got:
        assert r.signed_with(SECRET), r.headers
        assert not r.signed_with("not-the-secret-at-all")
        assert r.doc["idempotency_key"] == r.key == r.headers["x-kanade-delivery"]
        assert r.doc["kind"] == r.event and r.doc["count"] == len(r.doc["events"]) == 1
        assert r.headers["user-agent"].startswith("kanade/")
    by_kind = {r.event: r.doc["events"][0] for r in got if r.doc["events"][0]["id"]}
    assert by_kind["agent.offline"]["details"]["pc_id"] == "quiet"
    assert by_kind["agent.quarantined"]["details"] == {
        "pc_id": "pc-q", "version": "2.0", "error": "did not start"
    }  # fmt: skip
    assert by_kind["rollout.halted"]["details"]["wave"] == 1
    assert by_kind["schedule.skipped"]["details"]["reason"] == "frozen"

    async def recorded() -> dict[str, Any] | None:
        # The receiver answers before the backend writes the outcome: wait for the write.
        [hook] = (await backend.client.get("/api/notify/webhooks")).json()["items"]
        return dict(hook) if hook["deliveries"]["delivered"] == len(ALL) + 1 else None

    hook = await eventually(recorded, what="every delivery recorded as delivered")
    assert hook["deliveries"] == {"pending": 0, "delivered": len(ALL) + 1, "failed": 0}
    assert hook["last_delivery"]["status_code"] == 200


async def test_a_failing_receiver_gets_it_again_with_backoff_then_a_failed_one_is_retried(
    backend: InProcessBackend, receiver: Receiver
) -> None:
    receiver.answer(500, 503, 500)  # then 200
    await _add(backend, id="ops", url=receiver.url, events=["exec.failed"])
    await backend.services.db.write(lambda c: failed_exec(c, "e1", system_clock()))
    await eventually(lambda: receiver.accepted(), what="delivered after three failures")

    async def delivered() -> dict[str, Any] | None:
        items = (await backend.client.get("/api/notify/deliveries?webhook=ops")).json()["items"]
        return dict(items[0]) if items and items[0]["status"] == "delivered" else None

    d = await eventually(delivered, what="the outcome written")
    tries = receiver.requests
    assert [r.answered for r in tries] == [500, 503, 500, 200]
    assert len({r.key for r in tries}) == 1  # the same delivery, the same idempotency key
    assert [r.doc["attempt"] for r in tries] == [1, 2, 3, 4]
    gaps = [b.at - a.at for a, b in itertools.pairwise(tries)]
    for n, gap in enumerate(gaps, start=1):  # never sooner than the backoff (0.2, 0.4, 0.8 s)
        assert gap >= BASE_S * 2 ** (n - 1) - 0.05, gaps
    assert (d["status"], d["attempts"], d["last_status_code"]) == ("delivered", 4, 200)
    assert [a["status_code"] for a in d["attempt_log"]] == [500, 503, 500, 200]
    assert d["attempt_log"][0]["error"] == "HTTP 500: receiver says no"
    metrics = (await backend.client.get("/metrics")).text
    assert 'kanade_notify_attempts_total{outcome="retry"} 3.0' in metrics
    assert 'kanade_notify_attempts_total{outcome="delivered"} 1.0' in metrics
    assert "kanade_notify_backlog 0.0" in metrics

    # Out of attempts (5, backoff capped at 1 s) against a port nobody listens on: failed.
    await _add(backend, id="dead", url="http://127.0.0.1:9/nobody", events=["exec.failed"])
    await backend.services.db.write(lambda c: failed_exec(c, "e2", system_clock()))

    async def failed() -> dict[str, Any] | None:
        items = (await backend.client.get("/api/notify/deliveries?webhook=dead")).json()["items"]
        return items[0] if items and items[0]["status"] == "failed" else None

    dead = await eventually(failed, what="the dead webhook's delivery failed")
    assert dead["attempts"] == 5 and dead["last_error"].startswith("cannot connect")
    # The operator fixes the URL and retries it: delivered.
    r = await backend.client.patch("/api/notify/webhooks/dead", json={"url": receiver.url})
    assert r.status_code == 200, r.text
    r = await backend.client.post(f"/api/notify/deliveries/{dead['delivery_id']}/retry")
    assert r.status_code == 200 and r.json()["status"] == "pending", r.text
    await eventually(
        lambda: dead["delivery_id"] in {r.key for r in receiver.accepted()},
        what="the retried delivery",
    )
    again = await backend.client.post(f"/api/notify/deliveries/{dead['delivery_id']}/retry")
    assert again.status_code == 409 and "only a failed delivery" in again.json()["error"]


BAD: list[tuple[dict[str, Any], str]] = [
    ({"id": "ops", "url": "ftp://example.com/x"}, "url"),
    ({"id": "ops", "url": "https://example.com/x", "events": ["exec.failed", "oops"]},
     "events"),
    ({"id": "ops", "url": "https://example.com/x", "secret": "short"}, "secret"),
    ({"id": "ops", "kind": "slack", "url": "https://hooks.slack.com/x", "secret": "x" * 20},
     "secret"),
    ({"id": "ops", "url": "https://example.com/x", "offline_after": "5s"}, "offline_after"),
    ({"id": "o ps", "url": "https://example.com/x"}, "id"),
    ({"id": "ops", "url": "https://example.com/x", "retries": 3}, "retries"),
    ({"id": "ops"}, "url"),
]


async def test_bad_configuration_is_refused_naming_the_field(backend: InProcessBackend) -> None:
    for body, path in BAD:
        r = await backend.client.post("/api/notify/webhooks", json=body)
        assert r.status_code == 400, r.text
        assert [e["path"] for e in r.json()["errors"]] == [path], (body, r.json())
    assert (await backend.client.get("/api/notify/webhooks")).json()["items"] == []
    kinds = (await backend.client.get("/api/notify/kinds")).json()["items"]
    assert [k["kind"] for k in kinds] == ALL and all(k["description"] for k in kinds)


async def test_secrets_are_never_shown_and_every_change_is_audited(
    backend: InProcessBackend,
) -> None:
    slack = "https://hooks.slack.com/services/T0/B0/abcdefSECRETtoken1234"
    await _add(backend, id="chat", kind="slack", url=slack)
    made = await _add(backend, id="ops", url="https://example.com/in/hook-path", secret=SECRET)
    assert made["has_secret"] and made["url"] == "https://example.com/…path"
    r = await backend.client.patch("/api/notify/webhooks/chat", json={"secret": "y" * 20})
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "secret"
    r = await backend.client.patch("/api/notify/webhooks/ops", json={"url": "gopher://x"})
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "url"
    r = await backend.client.patch("/api/notify/webhooks/ops", json={"secret": None,
                                                                     "enabled": False})
    assert r.status_code == 200 and not r.json()["has_secret"] and not r.json()["enabled"]
    assert (await backend.client.delete("/api/notify/webhooks/chat")).status_code == 200
    assert (await backend.client.get("/api/notify/webhooks/chat")).status_code == 404
    r = await backend.client.post("/api/notify/webhooks", json={"id": "ops", "url": slack})
    assert r.status_code == 409

    shown = json.dumps([(await backend.client.get(p)).json() for p in (
        "/api/notify/webhooks", "/api/notify/webhooks/ops", "/api/notify/deliveries")])
    assert SECRET not in shown and "SECRETtoken" not in shown and "hook-path" not in shown

    async def audited() -> list[dict[str, Any]] | None:
        items = (await backend.client.get("/api/audit?limit=50")).json()["items"]
        mine = [i for i in items if str(i["action"]).startswith("webhook.")]
        return mine if len(mine) >= 4 else None

    trail = await eventually(audited, what="webhook changes audited")
    assert sorted(i["action"] for i in trail) == [
        "webhook.create", "webhook.create", "webhook.delete", "webhook.update"
    ]  # fmt: skip
    assert SECRET not in json.dumps(trail) and "SECRETtoken" not in json.dumps(trail)
    update = next(i for i in trail if i["action"] == "webhook.update")
    assert update["details"]["changed"] == ["enabled", "secret"]


async def test_a_webhook_comes_back_with_its_secret_after_a_wiped_database(
    nats_url: str, bus: Bus, store_url: str, receiver: Receiver
) -> None:
    async with in_process_backend(settings_for(nats_url, store_url)) as first:
        await _add(first, id="ops", url=receiver.url, secret=SECRET, events=["exec.failed"])

        async def written() -> bool:
            text = (await first.client.get("/metrics")).text
            return "kanade_state_backlog 0.0" in text

        await eventually(written, what="the webhook written to KV kanade_state")
    await asyncio.to_thread(wipe_store, store_url)
    async with in_process_backend(settings_for(nats_url, store_url)) as second:

        async def back() -> dict[str, Any] | None:
            r = await second.client.get("/api/notify/webhooks/ops")
            return dict(r.json()) if r.status_code == 200 else None

        hook = await eventually(back, what="the webhook restored")
        assert hook["has_secret"] and hook["events"] == ["exec.failed"]
        r = await second.client.post("/api/notify/webhooks/ops/test")
        assert r.status_code == 200 and r.json()["ok"], r.text
        [probe] = receiver.accepted()
        assert probe.event == "test" and probe.signed_with(SECRET)
