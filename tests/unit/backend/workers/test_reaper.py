"""The reaper (a Worker) against a real SQLite file with an injected clock (SPEC §4.3).

Rows close at exactly their deadline (not a microsecond before), a late real
result replaces a reaped row, and counters are recomputed so nothing counts twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from kanade.backend.store import executions, results
from kanade.backend.store.database import Database
from kanade.backend.store.tables import results as results_table
from kanade.backend.workers.projection.rows import finished_row, started_row
from kanade.backend.workers.reaper import MAX_PER_TICK, Reaper, ReapReport
from kanade.core.bounds import MAX_TIMEOUT_S
from kanade.core.models.wire import EventStarted, Result

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TIMEOUT_S = 30.0
DEADLINE = T0 + timedelta(seconds=TIMEOUT_S + 120)  # timeout + the 2 min floor


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def exec_row(exec_id: str, pcs: list[str], created: datetime = T0) -> dict[str, Any]:
    return {
        "exec_id": exec_id,
        "kind": "job",
        "job_id": "hello",
        "version": "1",
        "target": {"all": False, "groups": [], "pcs": pcs},
        "expected_pcs": pcs,
        "expected_count": len(pcs),
        "status": "pending",
        "initiated_by": "alice",
        "schedule_id": None,
        "nominal_time": None,
        "created_at": created,
        "request_id": f"req-{exec_id}",
    }


def started(exec_id: str, pc: str, timeout_s: float | None = TIMEOUT_S) -> EventStarted:
    return EventStarted(
        result_id=f"{exec_id}-{pc}",
        request_id=f"req-{exec_id}",
        exec_id=exec_id,
        pc_id=pc,
        job_id="hello",
        version="1",
        started_at=T0,
        timeout_s=timeout_s,
    )


def result(exec_id: str, pc: str, exit_code: int = 0) -> Result:
    return Result(
        result_id=f"{exec_id}-{pc}",
        request_id=f"req-{exec_id}",
        exec_id=exec_id,
        pc_id=pc,
        job_id="hello",
        version="1",
        exit_code=exit_code,
        finished_at=T0 + timedelta(minutes=10),
    )


async def setup_exec(db: Database, exec_id: str, pcs: list[str]) -> None:
    await db.write(lambda c: executions.upsert_executions(c, [exec_row(exec_id, pcs)], T0))


async def project_started(db: Database, ev: EventStarted, at: datetime = T0) -> None:
    def go(conn: Any) -> None:
        results.insert_started(conn, [started_row(ev, at)])
        executions.refresh_exec_counters(conn, [ev.exec_id], at)

    await db.write(go)


async def project_result(db: Database, res: Result, at: datetime) -> None:
    def go(conn: Any) -> None:
        results.upsert_finished(conn, [finished_row(res, at)])
        executions.refresh_exec_counters(conn, [res.exec_id], at)

    await db.write(go)


async def detail(db: Database, exec_id: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    def go(conn: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        row = executions.get_execution(conn, exec_id)
        assert row is not None
        return row, {r["pc_id"]: r for r in results.results_of_exec(conn, exec_id)}

    return await db.read(go)


def counters(row: dict[str, Any]) -> tuple[Any, ...]:
    keys = ("status", "started_count", "finished_count", "failed_count")
    return tuple(row[k] for k in keys)


async def test_a_row_is_reaped_at_exactly_its_deadline(db: Database) -> None:
    await setup_exec(db, "e1", ["pc1"])
    await project_started(db, started("e1", "pc1"))
    _, rows = await detail(db, "e1")
    assert rows["pc1"]["expires_at"] == DEADLINE

    clock = Clock(DEADLINE - timedelta(microseconds=1))
    reaper = Reaper(db, clock=clock)
    assert not await reaper.tick()
    row, rows = await detail(db, "e1")
    assert rows["pc1"]["state"] == "in_flight" and counters(row) == ("running", 1, 0, 0)

    clock.now = DEADLINE
    report = await reaper.tick()
    assert report.reaped == ["e1-pc1"]
    row, rows = await detail(db, "e1")
    assert rows["pc1"]["state"] == "reaped" and rows["pc1"]["exit_code"] == -1
    assert "reaped: no result by 2026-03-01T12:02:30Z" in rows["pc1"]["note"]
    assert counters(row) == ("completed", 1, 1, 1)

    clock.now = DEADLINE + timedelta(hours=5)
    assert not await reaper.tick()  # nothing left: a second pass changes nothing


async def test_a_late_result_replaces_the_reaped_row_without_double_counting(
    db: Database,
) -> None:
    await setup_exec(db, "e2", ["pc1", "pc2"])
    await project_started(db, started("e2", "pc1"))
    await project_started(db, started("e2", "pc2"))
    await project_result(db, result("e2", "pc2"), T0 + timedelta(seconds=5))
    await Reaper(db, clock=Clock(DEADLINE)).tick()
    row, rows = await detail(db, "e2")
    assert rows["pc1"]["state"] == "reaped"
    assert counters(row) == ("completed", 2, 2, 1)

    late = T0 + timedelta(hours=2)
    for _ in range(2):  # the late result, and its redelivery
        await project_result(db, result("e2", "pc1", exit_code=0), late)
    row, rows = await detail(db, "e2")
    assert rows["pc1"]["state"] == "finished" and rows["pc1"]["exit_code"] == 0
    assert rows["pc1"]["note"] is None and rows["pc1"]["recorded_at"] == late
    assert counters(row) == ("completed", 2, 2, 0)

    # The reaper never touches a finished row, whatever the clock says.
    assert not await Reaper(db, clock=Clock(late + timedelta(days=3))).tick()


async def test_unknown_timeout_waits_a_day(db: Database) -> None:
    await setup_exec(db, "e3", ["pc1"])
    await project_started(db, started("e3", "pc1", timeout_s=None))
    day = T0 + timedelta(hours=24)
    assert not await Reaper(db, clock=Clock(day - timedelta(microseconds=1))).tick()
    assert (await Reaper(db, clock=Clock(day)).tick()).reaped == ["e3-pc1"]


async def test_a_pending_exec_expires_after_an_hour_and_can_still_complete(
    db: Database,
) -> None:
    await setup_exec(db, "e4", ["pc1"])
    hour = T0 + timedelta(hours=1)
    assert not await Reaper(db, clock=Clock(hour - timedelta(microseconds=1))).tick()
    assert (await detail(db, "e4"))[0]["status"] == "pending"
    report = await Reaper(db, clock=Clock(hour)).tick()
    assert report.expired == ["e4"]
    assert (await detail(db, "e4"))[0]["status"] == "expired"

    # The agent was away longer than an hour: its result still shows.
    await project_result(db, result("e4", "pc1"), hour + timedelta(minutes=30))
    assert counters((await detail(db, "e4"))[0]) == ("completed", 1, 1, 0)


async def test_a_running_exec_is_not_expired(db: Database) -> None:
    await setup_exec(db, "e5", ["pc1", "pc2"])
    # The longest timeout there is (a week): not reaped ten days after it started.
    await project_started(db, started("e5", "pc1", timeout_s=MAX_TIMEOUT_S))
    report = await Reaper(db, clock=Clock(T0 + timedelta(days=10))).tick()
    assert report.expired == [] and report.reaped == []
    row, rows = await detail(db, "e5")
    assert row["status"] == "running"  # pc1 still runs
    # pc2 never started within the command lifetime: closed (every exec ends, §4.3).
    assert rows["pc2"]["state"] == "no_result"


async def test_rows_from_before_the_expiry_column_get_one(db: Database) -> None:
    await setup_exec(db, "e6", ["pc1"])
    await project_started(db, started("e6", "pc1"))
    await db.write(lambda c: c.execute(update(results_table).values(expires_at=None)))
    report = await Reaper(db, clock=Clock(DEADLINE)).tick()
    assert report.reaped == ["e6-pc1"]


def test_only_a_full_tick_asks_for_the_next_one_at_once() -> None:
    assert not ReapReport(["r"] * (MAX_PER_TICK - 1), ["e"]).full
    assert ReapReport(["r"] * MAX_PER_TICK).full
    assert ReapReport(expired=["e"] * MAX_PER_TICK).full


async def test_a_step_is_a_tick(db: Database) -> None:
    await setup_exec(db, "e7", ["pc1"])
    reaper = Reaper(db, clock=Clock(T0 + timedelta(hours=1)))
    assert await reaper.step() is False  # one exec expired: no backlog
    assert (await detail(db, "e7"))[0]["status"] == "expired"
