"""``projector-audit``: KANADE_AUDIT → the ``audit`` table (SPEC §4.2, §4.6).

Keyed by the stream sequence and inserted once, so redelivery never duplicates a
row and a replay after a wipe writes the same keys with the same ``recorded_at``
(the stream's publish time). Same acking rules as the other projectors: ack after
commit, nak on a database failure, log-and-ack poison.
"""

from __future__ import annotations

from typing import Any

import structlog
from nats.aio.msg import Msg

from kanade.backend.messaging.consumers import AUDIT_CONSUMER, ack_all, nak_all
from kanade.backend.store.audit import insert_audit
from kanade.backend.store.failures import is_transient
from kanade.backend.workers.projection.worker import (
    NAK_DELAY_S,
    ProjectionWorker,
    recorded_at,
)
from kanade.core.models.records import AuditRecord
from kanade.core.models.wire import WireDecodeError, decode

log = structlog.get_logger(__name__)

Batch = list[tuple[Msg, dict[str, Any]]]


def audit_row(msg: Msg) -> dict[str, Any]:
    rec = decode(AuditRecord, msg.data)
    return {
        "seq": msg.metadata.sequence.stream,
        "action": rec.action,
        "actor": rec.actor,
        "at": rec.at,
        "details": rec.details,
        "recorded_at": recorded_at(msg),
    }


class AuditProjector(ProjectionWorker):
    spec = AUDIT_CONSUMER

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
        self._dropped("audit", "invalid", len(poison))
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
                    self._dropped("audit", "unwritable")
                return
            for one in batch:  # isolate the row the database refuses
                await self._commit([one])
            return
        await ack_all([m for m, _ in batch])
        self._count("audit", len(batch))
