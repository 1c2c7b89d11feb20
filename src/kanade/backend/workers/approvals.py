"""The approval sweeper (SPEC §4.8): expires pending requests whose time is up and re-publishes
approved commands whose dispatch was cut short (a crash between the decision and the acks),
with the stored bytes and deterministic msg ids — never run twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

import structlog
from sqlalchemy.engine import Connection

from kanade.backend.messaging.exec_events import (
    publish_audit_once,
    publish_exact,
    publish_exec_status,
)
from kanade.backend.store import approvals as store
from kanade.backend.store.database import Database
from kanade.bus.connection import Bus
from kanade.core.approvals import EXPIRED_REASON
from kanade.core.instants import Clock
from kanade.core.models.wire import Command, decode
from kanade.core.msgids import audit_msg_id
from kanade.core.statuses import ExecStatus
from kanade.worker import Worker

log = structlog.get_logger(__name__)

DEFAULT_SWEEP_S: Final = 5.0
REDISPATCH_AFTER: Final = timedelta(seconds=10)
ORPHAN_AFTER: Final = timedelta(minutes=1)
SYSTEM_ACTOR: Final = "system:approvals"


class ApprovalSweeper(Worker):
    """Every ``sweep_s``: expiry, orphaned awaiting execs, interrupted dispatches."""

    name = "approvals"

    def __init__(
        self,
        db: Database,
        bus: Callable[[], Bus],
        *,
        clock: Clock,
        sweep_s: float = DEFAULT_SWEEP_S,
    ) -> None:
        super().__init__(interval=sweep_s)
        self._db = db
        self._bus = bus
        self._clock = clock

    async def step(self) -> None:
        await self.sweep()

    async def sweep(self) -> list[str]:
        """Expire due requests; re-publish approved commands whose dispatch was cut short.
        Returns the exec ids that expired."""
        now = self._clock()

        def expire(conn: Connection) -> list[tuple[str, str, str]]:
            out = store.expire_due(conn, now, actor=SYSTEM_ACTOR, reason=EXPIRED_REASON)
            store.reject_orphans(conn, now, older_than=ORPHAN_AFTER)
            return out

        expired = await self._db.write(expire)
        if expired:
            bus = self._bus_or_none()
            for exec_id, job_id, version in expired:
                log.info("approval request expired", exec_id=exec_id)
                if bus is not None:
                    await publish_exec_status(bus, exec_id, ExecStatus.REJECTED, SYSTEM_ACTOR, now)
                    await publish_audit_once(
                        bus,
                        "exec.approval_expire",
                        SYSTEM_ACTOR,
                        {"exec_id": exec_id, "job_id": job_id, "version": version},
                        audit_msg_id("exec.approval_expire", exec_id),
                        now,
                    )
        await self._redrive(now)
        return [e for e, _, _ in expired]

    async def _redrive(self, now: datetime) -> None:
        stale = now - REDISPATCH_AFTER
        rows = await self._db.read(lambda conn: store.undispatched(conn, stale))
        if not rows:
            return
        bus = self._bus()
        for row in rows:
            log.warning(
                "re-publishing an approved exec whose dispatch was interrupted",
                exec_id=row["exec_id"],
            )
            await self._republish(
                bus, str(row["exec_id"]), str(row["command"]), list(row["subjects"])
            )

    async def _republish(self, bus: Bus, exec_id: str, raw: str, subs: list[str]) -> None:
        cmd = decode(Command, raw.encode())
        await publish_exact(bus, raw.encode(), cmd.request_id, subs)
        sent_at = self._clock()
        await self._db.write(lambda conn: store.mark_dispatched(conn, exec_id, sent_at))

    def _bus_or_none(self) -> Bus | None:
        try:
            return self._bus()
        except Exception:
            return None
