"""Every exec ends (SPEC §4.3), in the store: expected pcs that never started become
``no_result`` rows at the exec's deadline (plus grace) or at once after a rejection, an
abort or a kill; the exec then completes; a late report still replaces the row.
On a real, migrated SQLite file (kanade.backend.store.unstarted)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, update
from store_rows import exec_row, job_command, row

from kanade.backend.store import executions, results, unstarted
from kanade.backend.store import rollouts as rollout_store
from kanade.backend.store.tables import executions as executions_table
from kanade.core.ids import no_result_id
from kanade.core.models.records import ExecRecord
from kanade.core.models.waves import Rollout
from kanade.core.rollout import ResultView, wave_progress
from kanade.core.signing import COMMAND_LIFETIME
from kanade.core.statuses import ExecStatus

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEADLINE = T0 + timedelta(minutes=5)
GRACE = timedelta(seconds=30)
DUE = DEADLINE + GRACE


def create(conn: Connection, exec_id: str, pcs: list[str], **kw: Any) -> None:
    r = {**exec_row(exec_id, pcs), "deadline_at": DEADLINE, **kw}
    executions.upsert_executions(conn, [r], T0)


def report(conn: Connection, exec_id: str, pc: str, *, state: str = "finished", **kw: Any) -> None:
    r = row(f"{exec_id}-{pc}", exec_id, pc, state=state, at=T0 + timedelta(seconds=1), **kw)
    if state == "in_flight":
        results.insert_started(conn, [r])
    else:
        results.upsert_finished(conn, [r])
    executions.refresh_exec_counters(conn, [exec_id], T0)


def state(conn: Connection, exec_id: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    ex = executions.get_execution(conn, exec_id)
    assert ex is not None
    return ex, {r["pc_id"]: r for r in results.results_of_exec(conn, exec_id)}


def counts(ex: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        ex[k] for k in ("status", "started_count", "finished_count", "failed_count")
    )


def test_unstarted_pcs_are_closed_at_the_deadline_and_the_exec_completes(engine: Engine) -> None:
    with engine.begin() as conn:
        create(conn, "e1", ["a", "b", "c"])
        report(conn, "e1", "a")
        assert not unstarted.close_due(conn, DUE - timedelta(microseconds=1), grace=GRACE)
        assert counts(state(conn, "e1")[0]) == ("running", 1, 1, 0)
        closed = unstarted.close_due(conn, DUE, grace=GRACE)
        assert closed.rows == {"e1": 2}
        ex, rows = state(conn, "e1")
    # b and c never started: finished (they will not report) and failed, not started
    assert counts(ex) == ("completed", 1, 3, 2) and ex["no_result_count"] == 2
    for pc in ("b", "c"):
        r = rows[pc]
        assert r["state"] == "no_result" and r["exit_code"] is None
        assert r["result_id"] == no_result_id("e1", pc)
        assert r["finished_at"] == DUE and r["recorded_at"] == DUE
        assert "never started by the exec's deadline 2026-03-01T12:05:00Z" in r["note"]
    with engine.begin() as conn:  # a second pass finds nothing more
        assert not unstarted.close_due(conn, DUE + timedelta(hours=1), grace=GRACE)


def test_an_exec_completed_by_an_unexpected_pc_still_closes_the_expected_one(
    engine: Engine,
) -> None:
    # An agent offline at dispatch gets a fleet-wide command when it is back (it was
    # enrolled when it was issued): its result counts, and the exec is "completed" while an
    # expected pc never answered. That pc must not stay pending for good either.
    with engine.begin() as conn:
        create(conn, "e8", ["a", "b"])
        report(conn, "e8", "a")
        report(conn, "e8", "late-comer")
        assert state(conn, "e8")[0]["status"] == "completed"
        closed = unstarted.close_due(conn, DUE, grace=GRACE)
        ex, rows = state(conn, "e8")
    assert closed.rows == {"e8": 1} and rows["b"]["state"] == "no_result"
    assert ex["ended_at"] == DUE


def test_an_ended_exec_is_not_looked_at_again(engine: Engine) -> None:
    with engine.begin() as conn:
        create(conn, "e9", ["a"])
        report(conn, "e9", "a")
        assert executions.ending_candidates(conn, DEADLINE, 10)  # due, not yet marked
        unstarted.close_due(conn, DUE, grace=GRACE)
        assert state(conn, "e9")[0]["ended_at"] == DUE
        assert executions.ending_candidates(conn, DUE + timedelta(days=30), 10) == []


def test_a_late_report_replaces_the_no_result_row(engine: Engine) -> None:
    with engine.begin() as conn:
        create(conn, "e2", ["a", "b"])
        unstarted.close_due(conn, DUE, grace=GRACE)
        assert counts(state(conn, "e2")[0]) == ("completed", 0, 2, 2)
        # b was offline for days and starts after all: its started event wins…
        report(conn, "e2", "b", state="in_flight")
        ex, rows = state(conn, "e2")
        assert rows["b"]["state"] == "in_flight" and rows["b"]["result_id"] == "e2-b"
        # the status is derived from the facts (SPEC §4.3): b runs after all, so the exec does
        assert counts(ex) == ("running", 1, 1, 1)
        # …and its result completes the row and the exec again.
        report(conn, "e2", "b")
        ex, rows = state(conn, "e2")
    assert rows["b"]["state"] == "finished" and len(rows) == 2
    assert counts(ex) == ("completed", 1, 2, 1) and ex["no_result_count"] == 1


def test_a_superseded_exec_names_the_newer_one(engine: Engine) -> None:
    with engine.begin() as conn:
        create(conn, "old", ["pc-x"])
        create(conn, "new", ["pc-x"], created_at=T0 + timedelta(seconds=10), request_id="r-new")
        report(conn, "new", "pc-x")
        unstarted.close_due(conn, DUE, grace=GRACE)
        ex, rows = state(conn, "old")
    assert ex["status"] == "completed"
    assert "(exec new) replaced it in the queue" in rows["pc-x"]["note"]


def test_an_exec_that_expected_nobody_completes_at_its_deadline(engine: Engine) -> None:
    with engine.begin() as conn:
        create(conn, "e0", [])
        assert not unstarted.close_due(conn, DUE - timedelta(seconds=1), grace=GRACE)
        assert unstarted.close_due(conn, DUE, grace=GRACE).ended == ["e0"]
        assert state(conn, "e0")[0]["status"] == "completed"


def test_a_pc_still_running_holds_the_exec_open(engine: Engine) -> None:
    with engine.begin() as conn:
        create(conn, "e3", ["a", "b"])
        report(conn, "e3", "a", state="in_flight", expires_at=DUE + timedelta(days=1))
        unstarted.close_due(conn, DUE, grace=GRACE)
        ex, rows = state(conn, "e3")
    assert rows["b"]["state"] == "no_result"
    assert ex["status"] == "running"  # a is still in flight: its own reaping ends it


def test_a_row_without_a_deadline_uses_the_command_lifetime(engine: Engine) -> None:
    with engine.begin() as conn:
        create(conn, "e4", ["a"], deadline_at=None)
        late = T0 + COMMAND_LIFETIME + GRACE
        assert not unstarted.close_due(conn, late - timedelta(seconds=1), grace=GRACE)
        assert unstarted.close_due(conn, late, grace=GRACE).rows == {"e4": 1}


def test_a_rejected_exec_is_closed_at_once(engine: Engine) -> None:
    now = T0 + timedelta(seconds=2)
    with engine.begin() as conn:
        create(conn, "e5", ["a", "b"], status="awaiting_approval", deadline_at=None)
        assert not unstarted.close_exec(conn, "e5", now)  # nothing sent, nothing to close
        executions.set_exec_status(conn, "e5", ExecStatus.REJECTED, now)
        assert unstarted.close_exec(conn, "e5", now).rows == {"e5": 2}
        ex, rows = state(conn, "e5")
    assert ex["status"] == "rejected"  # stays what the operator made it
    assert {r["state"] for r in rows.values()} == {"no_result"}
    assert all("rejected in approval" in r["note"] for r in rows.values())


def test_a_rejected_exec_left_open_is_closed_by_the_next_pass(engine: Engine) -> None:
    # e.g. the status record was re-projected after a wipe: nothing closed it at once
    with engine.begin() as conn:
        create(conn, "e6", ["a"], status="awaiting_approval", deadline_at=None)
        assert executions.apply_exec_status(conn, "e6", ExecStatus.REJECTED, T0)
        closed = unstarted.close_due(conn, T0 + timedelta(seconds=1), grace=GRACE)
        assert closed.rows == {"e6": 1}


def test_the_deadline_is_kept_and_only_extended(engine: Engine) -> None:
    with engine.begin() as conn:
        create(conn, "e7", ["a"], deadline_at=None)
        executions.extend_deadline(conn, "e7", DEADLINE)
        executions.extend_deadline(conn, "e7", DEADLINE - timedelta(minutes=1))  # not earlier
        assert state(conn, "e7")[0]["deadline_at"] == DEADLINE
        # the creation record replayed (a re-projection) does not forget it
        create(conn, "e7", ["a"], deadline_at=None)
        assert state(conn, "e7")[0]["deadline_at"] == DEADLINE


def _rollout(conn: Connection, rid: str) -> None:
    pcs = ["pc-0", "pc-1", "pc-2", "pc-3"]
    record = ExecRecord(
        exec_id=rid,
        kind="job",
        job_id="j",
        version="1",
        target={"all": True},
        expected_pcs=pcs,
        expected_count=len(pcs),
        created_at=T0,
        request_id="q",
    )
    executions.upsert_executions(conn, [record.row()], T0)
    rollout_store.create_rollout(
        conn,
        record=record,
        command=job_command(rid, T0),
        rollout=Rollout.model_validate(
            {"waves": [{"percent": 50}, {"percent": 100}], "halt_on_failure_rate": 0.2}
        ),
        groups_of={},
        starting_deadline_s=None,
        awaiting_approval=False,
        now=T0,
    )
    # wave 0 (pc-0, pc-1) goes out: the exec's deadline is its command's
    rollout_store.claim(conn, rid, 0, "b", T0, takeover_before=None)
    rollout_store.mark_dispatched(conn, rid, 0, T0)
    executions.extend_deadline(conn, rid, DEADLINE)


def _halt(conn: Connection, rid: str) -> None:
    ((rollout, wave),) = rollout_store.active(conn)
    rows = {pc: ResultView("finished", 1, False, T0) for pc in wave["pcs"]}
    progress = wave_progress(
        list(wave["pcs"]), rows, dispatched_at=T0, settle_after=timedelta(60), now=T0
    )
    assert rollout_store.settle(conn, rollout, wave, progress, T0) == "halt"


def test_a_halted_rollout_closes_its_unsent_pcs_at_the_deadline(engine: Engine) -> None:
    with engine.begin() as conn:
        _rollout(conn, "r1")
        report(conn, "r1", "pc-0", exit_code=1)
        report(conn, "r1", "pc-1", exit_code=1)
        # while it runs, the unsent wave is not given up on, even past the deadline
        unstarted.close_due(conn, DUE, grace=GRACE)
        assert set(state(conn, "r1")[1]) == {"pc-0", "pc-1"}
        _halt(conn, "r1")
        assert not unstarted.close_due(conn, DUE - timedelta(seconds=1), grace=GRACE)
        closed = unstarted.close_due(conn, DUE, grace=GRACE)
        ex, rows = state(conn, "r1")
    assert closed.rows == {"r1": 2} and closed.ended == []  # completed by the recount
    assert ex["status"] == "completed"
    for pc in ("pc-2", "pc-3"):
        assert rows[pc]["state"] == "no_result"
        assert rows[pc]["request_id"] == "r1-w1"  # counted in its own wave
        assert "rollout halted before its wave 1 (rest) went out" in rows[pc]["note"]


def test_an_aborted_rollout_closes_its_unsent_pcs_at_once(engine: Engine) -> None:
    now = T0 + timedelta(seconds=5)
    with engine.begin() as conn:
        _rollout(conn, "r2")
        report(conn, "r2", "pc-0", exit_code=1)
        _halt(conn, "r2")
        assert rollout_store.abort_from(conn, "r2", "halted", "bad", now) == ([1], None)
        executions.set_exec_status(conn, "r2", ExecStatus.CANCELLED, now)
        closed = unstarted.close_exec(conn, "r2", now, grace=GRACE)
        _, rows = state(conn, "r2")
    assert closed.rows == {"r2": 2}
    assert {pc for pc, r in rows.items() if r["state"] == "no_result"} == {"pc-2", "pc-3"}
    assert "pc-1" not in rows  # sent before the abort: it may still start until the deadline


def test_candidates_are_bounded_and_skip_ended_or_undecided_execs(engine: Engine) -> None:
    with engine.begin() as conn:
        for i in range(5):
            create(conn, f"b{i}", ["a"])
        create(conn, "done", ["a"])
        executions.mark_ended(conn, "done", T0)
        create(conn, "asked", ["a"], status="awaiting_approval")
        conn.execute(update(executions_table).values(deadline_at=DEADLINE))
        ids = [r["exec_id"] for r in executions.ending_candidates(conn, DEADLINE, limit=3)]
        every = [r["exec_id"] for r in executions.ending_candidates(conn, DEADLINE, limit=99)]
    assert len(ids) == 3 and sorted(every) == [f"b{i}" for i in range(5)]
