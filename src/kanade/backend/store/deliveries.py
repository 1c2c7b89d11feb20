"""``notify_deliveries``: the notification outbox (docs/notifications.md).

A delivery is *claimed* before it is sent — in one transaction its attempt is counted and
its next attempt moved past the send's timeout — so a sender that dies mid-request leaves
a row that is simply due again later (the receiver drops the repeat by its idempotency
key), and two senders can never take the same row: the claim is a compare-and-set on the
attempt count. The outcome is then written in one batch: delivered, due again after its
backoff, or failed once out of attempts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, bindparam, delete, func, select, true, update
from sqlalchemy.engine import Connection

from kanade.backend.store.paging import Page, Record, page
from kanade.backend.store.tables import notify_deliveries, webhooks
from kanade.backend.store.upsert import chunks
from kanade.core.instants import format_instant
from kanade.core.notify.retry import RetryPolicy
from kanade.core.statuses import DELIVERY_TRANSITIONS, DeliveryStatus, sources

ATTEMPTS_KEPT: Final = 5
"""Attempts remembered per delivery (status code, error, duration), newest last."""
MAX_ERROR: Final = 300

_D = notify_deliveries


@dataclass(frozen=True)
class Claimed:
    delivery_id: str
    webhook_id: str
    kind: str
    event_ids: tuple[str, ...]
    attempt: int
    """This attempt's number (1-based)."""
    webhook_kind: str
    url: str
    secret: str | None


@dataclass(frozen=True)
class Outcome:
    delivery_id: str
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    ms: float
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


def claim_due(conn: Connection, now: datetime, limit: int, hold: timedelta) -> list[Claimed]:
    """Claim up to ``limit`` pending deliveries due at ``now`` whose webhook is enabled:
    each attempt counted, its next attempt ``hold`` away (longer than a send may take)."""
    q = (
        select(
            _D.c.delivery_id,
            _D.c.webhook_id,
            _D.c.kind,
            _D.c.event_ids,
            _D.c.attempts,
            webhooks.c.kind.label("webhook_kind"),
            webhooks.c.url,
            webhooks.c.secret,
        )
        .join(webhooks, webhooks.c.webhook_id == _D.c.webhook_id)
        .where(
            _D.c.status == DeliveryStatus.PENDING,
            _D.c.next_attempt_at <= now,
            webhooks.c.enabled == true(),
        )
        .order_by(_D.c.next_attempt_at, _D.c.delivery_id)
        .limit(limit)
    )
    claimed: list[Claimed] = []
    for row in conn.execute(q).mappings():
        attempts = int(row["attempts"])
        res = conn.execute(
            update(_D)
            .where(
                _D.c.delivery_id == row["delivery_id"],
                _D.c.status == DeliveryStatus.PENDING,
                _D.c.attempts == attempts,
            )
            .values(attempts=attempts + 1, next_attempt_at=now + hold, last_attempt_at=now)
        )
        if res.rowcount == 1:
            claimed.append(
                Claimed(
                    str(row["delivery_id"]),
                    str(row["webhook_id"]),
                    str(row["kind"]),
                    tuple(str(e) for e in row["event_ids"] or []),
                    attempts + 1,
                    str(row["webhook_kind"]),
                    str(row["url"]),
                    None if row["secret"] is None else str(row["secret"]),
                )
            )
    return claimed


def record_outcomes(
    conn: Connection, outcomes: Sequence[Outcome], now: datetime, policy: RetryPolicy
) -> None:
    """Write each attempt's outcome: delivered, due again after its backoff, or failed when
    it was the last attempt allowed. A row that is no longer pending (deleted webhook,
    delivered by an earlier attempt) is left alone."""
    if not outcomes:
        return
    logs = {
        str(d): list(log or [])
        for chunk in chunks(sorted({o.delivery_id for o in outcomes}))
        for d, log in conn.execute(
            select(_D.c.delivery_id, _D.c.attempt_log).where(_D.c.delivery_id.in_(chunk))
        )
    }
    params: list[dict[str, Any]] = []
    for o in outcomes:
        if o.delivery_id not in logs:
            continue
        entry = {
            "attempt": o.attempt,
            "at": format_instant(o.at),
            "status_code": o.status_code,
            "error": o.error,
            "ms": round(o.ms, 1),
        }
        log = [*logs[o.delivery_id], entry][-ATTEMPTS_KEPT:]
        if o.ok:
            status, next_at, delivered = DeliveryStatus.DELIVERED, None, now
        elif policy.exhausted(o.attempt):
            status, next_at, delivered = DeliveryStatus.FAILED, None, None
        else:
            wait = policy.after(o.attempt, o.retry_after_s)
            status, next_at, delivered = DeliveryStatus.PENDING, now + timedelta(seconds=wait), None
        params.append(
            {
                "b_id": o.delivery_id,
                "b_attempt": o.attempt,
                "b_status": status,
                "b_next": next_at,
                "b_delivered": delivered,
                "b_code": o.status_code,
                "b_error": None if o.error is None else o.error[:MAX_ERROR],
                "b_log": log,
            }
        )
    if params:
        conn.execute(
            update(_D)
            .where(
                _D.c.delivery_id == bindparam("b_id"),
                _D.c.status == DeliveryStatus.PENDING,
                _D.c.attempts == bindparam("b_attempt"),
            )
            .values(
                status=bindparam("b_status"),
                next_attempt_at=bindparam("b_next"),
                delivered_at=bindparam("b_delivered"),
                last_status_code=bindparam("b_code"),
                last_error=bindparam("b_error"),
                attempt_log=bindparam("b_log"),
            ),
            params,
        )


def add_sent(conn: Connection, row: dict[str, Any]) -> None:
    """Record a delivery made at once, outside the outbox (a test notification)."""
    conn.execute(_D.insert().values(**row))


def retry(conn: Connection, delivery_id: str, now: datetime) -> str | None:
    """``failed → pending``, due now, with a fresh allowance of attempts; the status it
    had (None: no such delivery). Only a failed delivery moves."""
    current = conn.execute(
        select(_D.c.status).where(_D.c.delivery_id == delivery_id)
    ).scalar_one_or_none()
    if current is None:
        return None
    if current in sources(DELIVERY_TRANSITIONS, DeliveryStatus.PENDING):
        conn.execute(
            update(_D)
            .where(_D.c.delivery_id == delivery_id, _D.c.status == current)
            .values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now)
        )
    return str(current)


def list_deliveries(
    conn: Connection,
    *,
    webhook_id: str | None,
    status: str | None,
    limit: int,
    offset: int,
) -> Page:
    q = select(_D)
    if webhook_id is not None:
        q = q.where(_D.c.webhook_id == webhook_id)
    if status is not None:
        q = q.where(_D.c.status == status)
    q = q.order_by(_D.c.created_at.desc(), _D.c.delivery_id)
    return page(conn, q, limit, offset)


def get_delivery(conn: Connection, delivery_id: str) -> Record | None:
    row = conn.execute(select(_D).where(_D.c.delivery_id == delivery_id)).mappings().first()
    return None if row is None else dict(row)


def summary_by_webhook(conn: Connection) -> dict[str, dict[str, Any]]:
    """Per webhook: deliveries by status, and the newest attempted one's outcome."""
    out: dict[str, dict[str, Any]] = {}
    q = select(_D.c.webhook_id, _D.c.status, func.count()).group_by(_D.c.webhook_id, _D.c.status)
    for wid, status, n in conn.execute(q):
        out.setdefault(str(wid), {"counts": {}, "last": None})["counts"][str(status)] = int(n)
    newest = (
        select(_D.c.webhook_id, func.max(_D.c.last_attempt_at).label("at"))
        .group_by(_D.c.webhook_id)
        .subquery()
    )
    q2 = select(
        _D.c.webhook_id,
        _D.c.delivery_id,
        _D.c.status,
        _D.c.last_attempt_at,
        _D.c.last_status_code,
        _D.c.last_error,
    ).join(
        newest, and_(newest.c.webhook_id == _D.c.webhook_id, newest.c.at == _D.c.last_attempt_at)
    )
    for row in conn.execute(q2).mappings():
        entry = out.setdefault(str(row["webhook_id"]), {"counts": {}, "last": None})
        entry["last"] = {
            "delivery_id": row["delivery_id"],
            "status": row["status"],
            "at": row["last_attempt_at"],
            "status_code": row["last_status_code"],
            "error": row["last_error"],
        }
    return out


def backlog(conn: Connection) -> int:
    """Deliveries waiting to be sent (``/metrics``)."""
    q = select(func.count()).select_from(_D).where(_D.c.status == DeliveryStatus.PENDING)
    return int(conn.execute(q).scalar_one())


def prune(conn: Connection, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` finished (delivered or failed) deliveries created before
    ``before``."""
    ids = [
        str(i)
        for (i,) in conn.execute(
            select(_D.c.delivery_id)
            .where(_D.c.created_at < before, _D.c.status != DeliveryStatus.PENDING)
            .limit(limit)
        )
    ]
    for chunk in chunks(ids):
        conn.execute(delete(_D).where(_D.c.delivery_id.in_(chunk)))
    return len(ids)
