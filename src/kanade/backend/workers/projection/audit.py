"""KANADE_AUDIT → the ``audit`` table (SPEC §4.2, §4.6).

Keyed by the stream sequence and inserted once, so redelivery never duplicates a
row and a replay after a wipe writes the same keys with the same ``recorded_at``
(the stream's publish time). Same acking rules as the other projectors: ack after
commit, nak on a database failure, log-and-ack poison.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from nats.aio.msg import Msg
from sqlalchemy import Select, select
from sqlalchemy.engine import Connection

from kanade.backend.messaging.consumers import (
    ConsumerSpec,
    ack_all,
    consume_in_batches,
    ensure_consumer,
    nak_all,
)
from kanade.backend.messaging.records import AuditRecord
from kanade.backend.store.database import Database
from kanade.backend.store.reads import Page, _page
from kanade.backend.store.tables import audit
from kanade.backend.store.writes import _insert
from kanade.backend.workers.projection.projector import NAK_DELAY_S, is_transient, recorded_at
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.models.wire import WireDecodeError, decode

log = structlog.get_logger(__name__)

AUDIT_CONSUMER = ConsumerSpec(
    stream=subjects.STREAM_AUDIT,
    durable="projector-audit",
    filter_subjects=(subjects.AUDIT_ALL,),
)

Batch = list[tuple[Msg, dict[str, Any]]]


def audit_row(msg: Msg) -> dict[str, Any]:
    rec = decode(AuditRecord, msg.data)
    return {
        "seq": msg.metadata.sequence.stream,
        "action": rec.action[:128],
        "actor": rec.actor[:128],
        "at": rec.at,
        "details": rec.details,
        "recorded_at": recorded_at(msg),
    }


def insert_audit(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        stmt = _insert(conn, audit).on_conflict_do_nothing(index_elements=["seq"])
        conn.execute(stmt, rows)


class AuditProjector:
    def __init__(
        self,
        bus: Bus,
        db: Database,
        *,
        batch_max: int = 500,
        on_projected: Callable[[str, int], None] | None = None,
    ) -> None:
        self._bus = bus
        self._db = db
        self._batch_max = batch_max
        self._on_projected = on_projected

    async def prepare(self, *, reset: bool) -> None:
        await ensure_consumer(self._bus.js, AUDIT_CONSUMER, reset=reset)

    async def run(self) -> None:
        await ensure_consumer(self._bus.js, AUDIT_CONSUMER, reset=False)
        await consume_in_batches(
            self._bus.nc, AUDIT_CONSUMER, self.handle, batch_max=self._batch_max
        )

    async def handle(self, msgs: list[Msg]) -> None:
        batch: Batch = []
        poison: list[Msg] = []
        for msg in msgs:
            try:
                batch.append((msg, audit_row(msg)))
            except (WireDecodeError, ValueError) as exc:
                log.warning("poison audit record skipped", subject=msg.subject, error=str(exc))
                poison.append(msg)
        await ack_all(poison)
        await self._commit(batch)

    async def _commit(self, batch: Batch) -> None:
        if not batch:
            return
        try:
            await self._db.write(lambda conn: insert_audit(conn, [row for _, row in batch]))
        except Exception as exc:
            if is_transient(exc) or len(batch) == 1:
                if is_transient(exc):
                    log.error("audit batch not committed; redelivering", error=str(exc))
                    await nak_all([m for m, _ in batch], NAK_DELAY_S)
                else:
                    log.error("audit record refused by the database; skipped", error=str(exc))
                    await ack_all([m for m, _ in batch])
                return
            for one in batch:  # isolate the row the database refuses
                await self._commit([one])
            return
        await ack_all([m for m, _ in batch])
        if self._on_projected is not None:
            self._on_projected("audit", len(batch))


# --- reads ----------------------------------------------------------------------------


def list_audit(
    conn: Connection,
    *,
    actor: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> Page:
    q: Select[Any] = select(audit)
    if actor is not None:
        q = q.where(audit.c.actor == actor)
    if action is not None:
        q = q.where(audit.c.action == action)
    if since is not None:
        q = q.where(audit.c.recorded_at >= since)
    if until is not None:
        q = q.where(audit.c.recorded_at < until)
    q = q.order_by(audit.c.seq.desc())
    return _page(conn, q, limit, offset)
