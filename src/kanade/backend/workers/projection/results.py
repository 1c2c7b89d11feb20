"""``projector-results``: KANADE_RESULTS (results and EventStarted) → ``results`` rows,
their exec's counters, and the inventory facts / check statuses they carry."""

from __future__ import annotations

from datetime import datetime

from nats.aio.msg import Msg
from sqlalchemy.engine import Connection

from kanade.backend.messaging.consumers import RESULTS_CONSUMER, ack_all
from kanade.backend.store import executions, results
from kanade.backend.store.database import Database
from kanade.backend.workers.projection.facts import project_facts
from kanade.backend.workers.projection.rows import decode_results
from kanade.backend.workers.projection.worker import Item, OnProjected, ProjectionWorker
from kanade.bus.connection import Bus
from kanade.core.instants import Clock, system_clock


def write_results(conn: Connection, items: list[Item], now: datetime) -> None:
    """One transaction: started rows, then results (a result in the same batch as its
    EventStarted completes the row either way), then the affected exec counters."""
    results.insert_started(conn, [i.row for i in items if i.started])
    results.upsert_finished(conn, [i.row for i in items if not i.started])
    project_facts(conn, [i.row for i in items if not i.started])
    executions.refresh_exec_counters(conn, {i.row["exec_id"] for i in items}, now)


class ResultsProjector(ProjectionWorker):
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
            bus, db, RESULTS_CONSUMER, batch_max=batch_max, clock=clock, on_projected=on_projected
        )

    async def handle(self, msgs: list[Msg]) -> None:
        items, poison = decode_results(msgs)
        await ack_all(poison)
        await self.commit("results", items, write_results)
