"""``projector-execs``: KANADE_EXECS → ``executions`` rows, so the table can be rebuilt
from the stream — creation records, and the status records an operator's decision
produced (``kanade.exec.cancelled.<id>``, …)."""

from __future__ import annotations

from datetime import datetime

from nats.aio.msg import Msg
from sqlalchemy.engine import Connection

from kanade.backend.messaging.consumers import EXECS_CONSUMER, ack_all
from kanade.backend.store import executions
from kanade.backend.store.database import Database
from kanade.backend.workers.projection.facts import project_facts_for_execs
from kanade.backend.workers.projection.rows import decode_exec_records
from kanade.backend.workers.projection.worker import Item, OnProjected, ProjectionWorker
from kanade.bus.connection import Bus
from kanade.core.instants import Clock, system_clock


def write_exec_records(conn: Connection, items: list[Item], now: datetime) -> None:
    created = [i.row for i in items if not i.status_only]
    executions.upsert_executions(conn, created, now)
    project_facts_for_execs(conn, created)
    # Status records come after their exec's creation in the stream; applied through
    # the transition table, so a replay can never walk an exec backwards.
    for item in items:
        if item.status_only:
            executions.apply_exec_status(conn, item.row["exec_id"], item.row["status"], now)


class ExecsProjector(ProjectionWorker):
    def __init__(
        self,
        bus: Bus,
        db: Database,
        *,
        batch_max: int = 500,
        clock: Clock = system_clock,
        on_projected: OnProjected | None = None,
    ) -> None:
        super().__init__(
            bus, db, EXECS_CONSUMER, batch_max=batch_max, clock=clock, on_projected=on_projected
        )

    async def handle(self, msgs: list[Msg]) -> None:
        items, poison = decode_exec_records(msgs)
        await ack_all(poison)
        await self.commit("execs", items, write_exec_records)
