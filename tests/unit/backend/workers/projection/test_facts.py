"""Facts do not depend on the order in which results and their exec record arrive
(a replay projects the two streams independently)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from kanade.backend.store import executions, results
from kanade.backend.store.tables import checks, inventory, inventory_history
from kanade.backend.store.tables import results as results_table
from kanade.backend.workers.projection.facts import project_facts, project_facts_for_execs
from kanade.backend.workers.projection.rows import finished_row
from kanade.core.models.wire import Result

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def exec_row(exec_id: str) -> dict[str, Any]:
    return {
        "exec_id": exec_id,
        "kind": "job",
        "job_id": "hw",
        "version": "1",
        "target": {"all": True, "groups": [], "pcs": []},
        "expected_pcs": ["pc1"],
        "expected_count": 1,
        "status": "pending",
        "initiated_by": "a",
        "schedule_id": None,
        "nominal_time": None,
        "created_at": T0,
        "request_id": f"r-{exec_id}",
        "inventory_hint": {"display": [], "summary": []},
        "check_hint": {"name": "hw-ok", "status_field": "status", "detail_field": "detail"},
    }


def result_row(exec_id: str, stdout: str, minute: int) -> dict[str, Any]:
    res = Result(
        result_id=f"{exec_id}-pc1",
        request_id=f"r-{exec_id}",
        exec_id=exec_id,
        pc_id="pc1",
        job_id="hw",
        version="1",
        exit_code=0,
        stdout=stdout,
        finished_at=T0 + timedelta(minutes=minute),
    )
    return finished_row(res, T0 + timedelta(minutes=minute, seconds=1))


def state(engine: Engine) -> tuple[Any, ...]:
    with engine.connect() as conn:
        return (
            [dict(r) for r in conn.execute(select(inventory)).mappings()],
            sorted(r.result_id for r in conn.execute(select(inventory_history))),
            [dict(r) for r in conn.execute(select(checks)).mappings()],
        )


@pytest.mark.parametrize("records_first", [True, False])
def test_same_facts_whichever_stream_comes_first(engine: Engine, records_first: bool) -> None:
    rows = [
        result_row("e1", '{"status": "ok", "cpus": 4}', minute=1),
        result_row("e2", '{"status": "warn", "cpus": 8}', minute=2),
    ]
    with engine.begin() as conn:
        if records_first:
            executions.upsert_executions(conn, [exec_row("e1"), exec_row("e2")], T0)
            project_facts_for_execs(conn, [exec_row("e1"), exec_row("e2")])
        for row in reversed(rows):  # newest first: must not be overwritten by the older
            results.upsert_finished(conn, [row])
            project_facts(conn, [row])
        if not records_first:
            executions.upsert_executions(conn, [exec_row("e1"), exec_row("e2")], T0)
            project_facts_for_execs(conn, [exec_row("e1"), exec_row("e2")])
    current, history, chk = state(engine)
    assert [c["facts"] for c in current] == [{"status": "warn", "cpus": 8}]
    assert history == ["e1-pc1", "e2-pc1"]
    assert [(c["name"], c["status"], c["result_id"]) for c in chk] == [("hw-ok", "warn", "e2-pc1")]
    # A redelivery of everything changes nothing.
    with engine.begin() as conn:
        project_facts(conn, rows)
        project_facts_for_execs(conn, [exec_row("e1"), exec_row("e2")])
    assert state(engine) == (current, history, chk)


@pytest.mark.parametrize("depth", [100, 5000])
def test_a_deeply_nested_stdout_is_no_facts_and_never_costs_the_result(
    engine: Engine, depth: int
) -> None:
    """Issue #15 (bus fuzzer): ``json.loads`` raises RecursionError, not ValueError, past
    the interpreter's recursion limit; the projector then refused the whole row and the
    finished result was lost. Now such stdout is simply not facts (nor too deep ones)."""
    nested = '{"status": "ok", "x": ' + "[" * depth + "]" * depth + "}"
    row = result_row("deep", nested, minute=1)
    with engine.begin() as conn:
        executions.upsert_executions(conn, [exec_row("deep")], T0)
        results.upsert_finished(conn, [row])
        project_facts(conn, [row])
    with engine.connect() as conn:
        stored = conn.execute(select(results_table.c.result_id)).scalars().all()
    assert stored == ["deep-pc1"]
    current, history, statuses = state(engine)
    assert (current, history) == ([], [])
    assert [(c["status"], c["detail"]) for c in statuses] == [
        ("unknown", "stdout is not a check report")
    ]
