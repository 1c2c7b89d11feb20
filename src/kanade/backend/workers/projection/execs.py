"""``projector-execs``: KANADE_EXECS → ``executions`` rows, so the table can be rebuilt
from the stream — creation records, and the status records an operator's decision
produced (``kanade.exec.cancelled.<id>``, …)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from kanade.backend.messaging.consumers import EXECS_CONSUMER
from kanade.backend.store import executions, rollouts
from kanade.backend.workers.projection.facts import project_facts_for_execs
from kanade.backend.workers.projection.rows import decode_exec_records
from kanade.backend.workers.projection.worker import Item, ItemProjector


def write_exec_records(conn: Connection, items: list[Item], now: datetime) -> None:
    created = [i.row for i in items if not i.status_only]
    executions.upsert_executions(conn, created, now)
    project_facts_for_execs(conn, created)
    # Decision records are facts the status is derived from (core.execstatus): the order
    # they meet the creation record and the results in does not matter.
    executions.record_decisions(
        conn,
        [
            (i.row["exec_id"], i.row["status"], i.row.get("at"), i.row.get("by"))
            for i in items
            if i.status_only
        ],
        now,
    )
    for item in items:
        if item.status_only and item.row.get("deadline_at") is not None:
            executions.extend_deadline(conn, item.row["exec_id"], item.row["deadline_at"])
    # A rollout's deadline comes from its sent waves (restored operator state after a wipe).
    for exec_id, deadline in rollouts.wave_deadlines(conn, [r["exec_id"] for r in created]).items():
        executions.extend_deadline(conn, exec_id, deadline)


class ExecsProjector(ItemProjector):
    spec = EXECS_CONSUMER
    kind = "execs"
    decode = decode_exec_records
    write = write_exec_records
