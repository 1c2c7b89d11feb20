"""``projector-results``: KANADE_RESULTS (results and EventStarted) → ``results`` rows,
their exec's counters, and the inventory facts / check statuses they carry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from kanade.backend.messaging.consumers import RESULTS_CONSUMER
from kanade.backend.store import executions, results
from kanade.backend.workers.projection.facts import project_facts
from kanade.backend.workers.projection.rows import decode_results
from kanade.backend.workers.projection.worker import Item, ItemProjector
from kanade.core.ids import NO_RESULT_ID_PREFIX

Row = Mapping[str, Any]


def coalesce(
    started: Sequence[Row], finished: Sequence[Row]
) -> tuple[list[Row], list[Row]]:
    """A batch's started and result rows as ``(started rows to insert, result rows to
    upsert)``, each ``result_id`` written once: what inserting every started row (if
    absent), then upserting every result, leaves in the table.

    A backlog holds the EventStarted and the result of most pcs in one batch; written in
    turn, that row is inserted, then rewritten (every index twice). Both rules make one
    row enough: the first started row of an id is the one inserted, the first result the
    one that finishes it (later ones find it finished), and a result completing a started
    row writes :data:`results.RESULT_UPDATE_COLUMNS` over it — so the merged row is the
    started row with those columns of the result. Not for a ``no_result`` id (one an agent
    made up): a row there may be dropped between the two writes (``drop_no_results``)."""
    first_started: dict[str, Row] = {}
    for row in started:
        first_started.setdefault(row["result_id"], row)
    first_result: dict[str, Row] = {}
    for row in finished:
        first_result.setdefault(row["result_id"], row)
    upserts: list[Row] = []
    for rid, res in first_result.items():
        start = None if rid.startswith(NO_RESULT_ID_PREFIX) else first_started.pop(rid, None)
        if start is None:
            upserts.append(res)
        else:
            upserts.append({**start, **{c: res[c] for c in results.RESULT_UPDATE_COLUMNS}})
    return list(first_started.values()), upserts


def write_results(conn: Connection, items: list[Item], now: datetime) -> None:
    """One transaction: started rows, then results (a result in the same batch as its
    EventStarted completes the row either way: :func:`coalesce` writes it once), then the
    affected exec counters."""
    started = [i.row for i in items if i.started]
    finished = [i.row for i in items if not i.started]
    inserts, upserts = coalesce(started, finished)
    # The no_result rows go as they would row by row: those of every started row first.
    results.insert_started(conn, inserts, reports=started)
    results.upsert_finished(conn, upserts, reports=finished)
    project_facts(conn, finished)
    executions.refresh_exec_counters(conn, {i.row["exec_id"] for i in items}, now)


class ResultsProjector(ItemProjector):
    spec = RESULTS_CONSUMER
    kind = "results"
    decode = decode_results
    write = write_results
