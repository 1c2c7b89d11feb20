"""``projector-results``: KANADE_RESULTS (results and EventStarted) → ``results`` rows,
their exec's counters, and the inventory facts / check statuses they carry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from kanade.backend.messaging.consumers import RESULTS_CONSUMER
from kanade.backend.store import executions, results
from kanade.backend.workers.projection.facts import project_facts
from kanade.backend.workers.projection.rows import decode_results
from kanade.backend.workers.projection.worker import Item, ItemProjector


def write_results(conn: Connection, items: list[Item], now: datetime) -> None:
    """One transaction: started rows, then results (a result in the same batch as its
    EventStarted completes the row either way), then the affected exec counters."""
    results.insert_started(conn, [i.row for i in items if i.started])
    results.upsert_finished(conn, [i.row for i in items if not i.started])
    project_facts(conn, [i.row for i in items if not i.started])
    executions.refresh_exec_counters(conn, {i.row["exec_id"] for i in items}, now)


class ResultsProjector(ItemProjector):
    spec = RESULTS_CONSUMER
    kind = "results"
    decode = decode_results
    write = write_results
