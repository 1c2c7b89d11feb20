"""Execution rows: counters recomputed from their results, status advanced."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from store_rows import T0, exec_row, row

from kanade.backend.store import executions, results
from kanade.backend.store.tables import executions as executions_table


def test_counters_are_recomputed_and_status_advances(engine: Engine) -> None:
    with engine.begin() as conn:
        executions.upsert_executions(conn, [exec_row("e1", ["pc1", "pc2", "pc3"])], T0)
        results.insert_started(conn, [row("r1", "e1", "pc1", state="in_flight", at=T0)])
        executions.refresh_exec_counters(conn, ["e1"], T0)

    def exec_state() -> tuple[Any, ...]:
        with engine.connect() as conn:
            got = executions.get_execution(conn, "e1")
        assert got is not None
        return tuple(
            got[k]
            for k in ("status", "started_count", "finished_count", "failed_count", "skipped_count")
        )

    assert exec_state() == ("running", 1, 0, 0, 0)
    finished = [
        row("r1", "e1", "pc1", state="finished", at=T0),
        row("r2", "e1", "pc2", state="finished", at=T0, exit_code=3),
        row("r3", "e1", "pc3", state="finished", at=T0, exit_code=122, skipped=True),
    ]
    for _ in range(3):  # redelivery: counting, not incrementing
        with engine.begin() as conn:
            results.upsert_finished(conn, finished)
            executions.refresh_exec_counters(conn, ["e1"], T0)
    assert exec_state() == ("completed", 3, 3, 1, 1)

    # Re-projecting the creation record neither resets the status nor the counters.
    with engine.begin() as conn:
        executions.upsert_executions(conn, [exec_row("e1", ["pc1", "pc2", "pc3"])], T0)
    assert exec_state() == ("completed", 3, 3, 1, 1)


def test_results_before_their_exec_record_are_counted(engine: Engine) -> None:
    with engine.begin() as conn:
        results.upsert_finished(conn, [row("r1", "e9", "pc1", state="finished", at=T0)])
        executions.refresh_exec_counters(conn, ["e9"], T0)  # no exec row yet: nothing to do
        executions.upsert_executions(conn, [exec_row("e9", ["pc1"])], T0)
    with engine.connect() as conn:
        got = conn.execute(
            select(executions_table.c.status, executions_table.c.finished_count).where(
                executions_table.c.exec_id == "e9"
            )
        ).one()
    assert tuple(got) == ("completed", 1)
