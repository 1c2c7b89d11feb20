"""kanade.backend.workers.projection.results: a batch holding the EventStarted and the
result of one pc writes that row once (``coalesce``), and the table ends exactly as the
row-by-row unit of work leaves it — on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, select, update

from kanade.backend.store import executions, results
from kanade.backend.store.tables import executions as executions_table
from kanade.backend.store.tables import results as results_table
from kanade.backend.workers.projection.results import coalesce, write_results
from kanade.backend.workers.projection.worker import Item
from kanade.core.ids import no_result_id
from kanade.core.lifecycle import result_expires_at

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EXECS = ("e1", "e2")
PCS = ("p1", "p2")
# A few real ids, and the no_result ids of two pairs (an agent may send any id).
IDS = ("r1", "r2", "r3", no_result_id("e1", "p1"), no_result_id("e2", "p2"))


def row(rid: str, exec_id: str, pc: str, *, state: str, at: datetime, **kw: Any) -> dict[str, Any]:
    """A ``results`` row as the projector builds it (rows.started_row / finished_row)."""
    return {
        "result_id": rid, "exec_id": exec_id, "request_id": "q-" + exec_id, "pc_id": pc,
        "job_id": "j", "version": "1", "state": state, "exit_code": None, "skipped": False,
        "stdout": "", "stderr": "", "stdout_bytes": 0, "stderr_bytes": 0, "stdout_ref": None,
        "stderr_ref": None, "started_at": T0, "finished_at": None, "attempts": 1, "note": None,
        "schedule_id": None, "nominal_time": None, "recorded_at": at, "timeout_s": None,
        "expires_at": None, **kw,
    }  # fmt: skip


def exec_row(exec_id: str) -> dict[str, Any]:
    return {
        "exec_id": exec_id, "kind": "job", "job_id": "j", "version": "1",
        "target": {"all": False, "groups": [], "pcs": list(PCS)}, "expected_pcs": list(PCS),
        "expected_count": len(PCS), "status": "pending", "initiated_by": "anonymous",
        "schedule_id": None, "nominal_time": None, "created_at": T0, "request_id": "q-" + exec_id,
    }  # fmt: skip


def _started(rid: str, exec_id: str = "e1", pc: str = "p1", *, second: int = 0,
             timeout_s: float = 60.0) -> dict[str, Any]:
    at = T0 + timedelta(seconds=second)
    return row(rid, exec_id, pc, state="in_flight", at=at, timeout_s=timeout_s,
               expires_at=result_expires_at(at, timeout_s))  # fmt: skip


def _finished(rid: str, exec_id: str = "e1", pc: str = "p1", *, second: int = 0,
              exit_code: int = 0) -> dict[str, Any]:
    at = T0 + timedelta(seconds=second)
    return row(rid, exec_id, pc, state="finished", at=at, exit_code=exit_code,
               stdout=f"out {second}\n", stdout_bytes=6, finished_at=at)  # fmt: skip


def test_a_started_row_and_its_result_become_one_upsert() -> None:
    s, r = _started("r1", second=1), _finished("r1", second=2)
    inserts, upserts = coalesce([s], [r])
    assert inserts == []
    (merged,) = upserts
    # The result's columns, over the started row's identity, timeout and expiry.
    assert merged["state"] == "finished" and merged["recorded_at"] == r["recorded_at"]
    assert merged["stdout"] == "out 2\n"
    assert merged["timeout_s"] == 60.0 and merged["expires_at"] == s["expires_at"]


def test_the_first_started_row_and_the_first_result_of_an_id_win() -> None:
    s1, s2 = _started("r1", second=1), _started("r1", second=5, timeout_s=9)
    r1, r2 = _finished("r1", second=2), _finished("r1", second=3, exit_code=4)
    lone = _started("r2", pc="p2")
    inserts, upserts = coalesce([s1, lone, s2], [r1, r2])
    assert inserts == [lone]
    assert [(u["timeout_s"], u["exit_code"]) for u in upserts] == [(60.0, 0)]


def test_a_no_result_id_is_not_merged() -> None:
    rid = no_result_id("e1", "p1")
    s, r = _started(rid), _finished(rid)
    assert coalesce([s], [r]) == ([s], [r])


# --- the property: the coalesced batch == the row-by-row unit of work -------------------


def _reference(conn: Connection, started: list[dict[str, Any]],
               finished: list[dict[str, Any]]) -> None:
    """The unit of work one row at a time: the no_result rows of every started row go,
    each started row is inserted if absent, the no_result rows of every result go, each
    result is upserted; then the exec counters."""
    results.drop_no_results(conn, started)
    for s in started:
        results.insert_started(conn, [s], reports=[])
    results.drop_no_results(conn, finished)
    for r in finished:
        results.upsert_finished(conn, [r], reports=[])
    executions.refresh_exec_counters(conn, {x["exec_id"] for x in started + finished}, T0)


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, int], list[Item]]:
    """Rows already there (any state, some at no_result ids), which execs have closed
    pcs, and a batch of started events and results drawn from a few ids and pcs."""
    existing: dict[str, dict[str, Any]] = {}
    for rid in draw(st.lists(st.sampled_from(IDS), unique=True, max_size=4)):
        e, pc = draw(st.sampled_from(EXECS)), draw(st.sampled_from(PCS))
        state = draw(st.sampled_from(["in_flight", "finished", "reaped", "no_result"]))
        base = (_started if state == "in_flight" else _finished)(rid, e, pc, second=-5)
        existing[rid] = base | {"state": state}
    closed = {e: draw(st.integers(0, 1)) for e in EXECS}
    batch: list[Item] = []
    for _ in range(draw(st.integers(0, 8))):
        rid = draw(st.sampled_from(IDS))
        e, pc = draw(st.sampled_from(EXECS)), draw(st.sampled_from(PCS))
        second = draw(st.integers(0, 20))
        if draw(st.booleans()):
            timeout = draw(st.sampled_from([30.0, 60.0]))
            r = _started(rid, e, pc, second=second, timeout_s=timeout)
            batch.append(Item(None, r, started=True))  # type: ignore[arg-type]
        else:
            r = _finished(rid, e, pc, second=second, exit_code=draw(st.integers(0, 2)))
            batch.append(Item(None, r))  # type: ignore[arg-type]
    return list(existing.values()), closed, batch


def _setup(conn: Connection, existing: list[dict[str, Any]], closed: dict[str, int]) -> None:
    conn.execute(results_table.delete())
    conn.execute(executions_table.delete())
    executions.upsert_executions(conn, [exec_row(e) for e in EXECS], T0)
    for e, n in closed.items():  # drop_no_results looks only at execs with closed pcs
        conn.execute(update(executions_table).where(executions_table.c.exec_id == e)
                     .values(no_result_count=n))  # fmt: skip
    if existing:
        conn.execute(results_table.insert(), existing)


def _table(conn: Connection) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows = conn.execute(select(results_table).order_by(results_table.c.result_id)).mappings()
    execs = conn.execute(select(executions_table).order_by(executions_table.c.exec_id))
    return [dict(r) for r in rows], [dict(e) for e in execs.mappings()]


NR = no_result_id("e1", "p1")
# An id an agent made up, equal to the no_result id of another pair that a result of the
# same batch reports on: the closed row blocks the started row, then goes, so the result
# lands alone — merging the started row in would keep its timeout.
CRAFTED = (
    [_finished(NR, "e1", "p1", second=-5) | {"state": "no_result"}],
    {"e1": 1, "e2": 0},
    [Item(None, _started(NR, "e2", "p2"), started=True),  # type: ignore[arg-type]
     Item(None, _finished(NR, "e2", "p2")),  # type: ignore[arg-type]
     Item(None, _finished("r1", "e1", "p1"))],  # type: ignore[arg-type]
)  # fmt: skip


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cases())
@example(CRAFTED)
def test_a_coalesced_batch_leaves_what_the_row_by_row_unit_of_work_leaves(
    engine: Engine, case: tuple[list[dict[str, Any]], dict[str, int], list[Item]]
) -> None:
    existing, closed, batch = case
    with engine.begin() as conn:
        _setup(conn, existing, closed)
        _reference(conn, [i.row for i in batch if i.started],
                   [i.row for i in batch if not i.started])  # fmt: skip
        expected = _table(conn)
    with engine.begin() as conn:
        _setup(conn, existing, closed)
        write_results(conn, batch, T0)
        assert _table(conn) == expected
