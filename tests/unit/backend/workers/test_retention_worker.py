"""The retention worker (a Worker) against a real SQLite file with an injected clock: one
pass brings every table within its age and count limits in small batches, lets other
writes in between them, deletes the pruned results' output objects and reports to
``/metrics`` and to the last-run record."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from kanade.backend.observability.metrics import Metrics
from kanade.backend.store import executions, projection_state, results
from kanade.backend.store import retention as store
from kanade.backend.store.audit import insert_audit
from kanade.backend.store.database import Database
from kanade.backend.store.scheduling import DecisionRow, record_decisions
from kanade.backend.store.tables import (
    agent_schedule_decisions,
    audit,
    enroll_tokens,
    inventory_history,
    schedule_decisions,
)
from kanade.backend.store.tables import executions as executions_table
from kanade.backend.store.tables import results as results_table
from kanade.backend.workers.retention import MAX_PAUSE_S, MIN_PAUSE_S, RetentionWorker, pause_after
from kanade.core.retention import parse_overrides

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=400)  # past every default age
RECENT = NOW - timedelta(hours=1)


def _result(exec_id: str, pc: str, at: datetime, **kw: Any) -> dict[str, Any]:
    return {
        "result_id": f"{exec_id}-{pc}", "exec_id": exec_id, "request_id": f"r-{exec_id}",
        "pc_id": pc, "job_id": "hello", "version": "1", "state": "finished", "exit_code": 0,
        "skipped": False, "stdout": "", "stderr": "", "stdout_bytes": 0, "stderr_bytes": 0,
        "stdout_ref": None, "stderr_ref": None, "started_at": at, "finished_at": at,
        "attempts": 1, "note": None, "schedule_id": None, "nominal_time": None,
        "recorded_at": at, "timeout_s": None, **kw,
    }  # fmt: skip


def _exec(conn: Connection, exec_id: str, pcs: list[str], at: datetime, *, ended: bool = True,
          job: str = "hello", refs: bool = False) -> None:  # fmt: skip
    executions.upsert_executions(conn, [{
        "exec_id": exec_id, "kind": "job", "job_id": job, "version": "1",
        "target": {"pcs": pcs}, "expected_pcs": pcs, "expected_count": len(pcs),
        "status": "pending", "initiated_by": "bob", "schedule_id": None, "nominal_time": None,
        "created_at": at, "request_id": f"r-{exec_id}",
    }], at)  # fmt: skip
    results.upsert_finished(conn, [
        _result(exec_id, pc, at, stdout_ref=f"out-{exec_id}-{pc}" if refs else None)
        for pc in pcs
    ])  # fmt: skip
    executions.refresh_exec_counters(conn, [exec_id], at)
    if ended:
        executions.mark_ended(conn, exec_id, at)


def seed(conn: Connection) -> None:
    """Old rows in every table, some recent ones, and an old exec that never ended."""
    pcs = [f"pc{i}" for i in range(6)]
    for i in range(4):
        _exec(conn, f"old{i}", pcs[:2], OLD + timedelta(minutes=i), refs=True)
    _exec(conn, "stuck", pcs, OLD, ended=False, job="other")
    for i in range(5):
        _exec(conn, f"new{i}", pcs[:3], RECENT + timedelta(seconds=i))
    conn.execute(inventory_history.insert(), [
        {"result_id": f"h{i}", "pc_id": "pc0", "job_id": "inv", "version": "1", "facts": {},
         "exec_id": "e", "observed_at": at, "recorded_at": at}
        for i, at in enumerate([OLD] * 12 + [RECENT] * 8)
    ])  # fmt: skip
    insert_audit(conn, [
        {"seq": s, "action": "x", "actor": "bob", "at": at, "details": {}, "recorded_at": at}
        for s, at in enumerate([OLD] * 25 + [RECENT] * 15, start=1)
    ])  # fmt: skip
    for sid in ("s1", "s2"):
        record_decisions(conn, [
            DecisionRow(sid, f"{sid}@{i}", at, "skipped", "frozen", decided_at=at)
            for i, at in enumerate([OLD] * 3 + [RECENT] * 30)
        ], NOW)  # fmt: skip
    conn.execute(agent_schedule_decisions.insert(), [
        {"decision_id": f"pc0:s1@{i}:fired", "schedule_id": "s1", "pc_id": "pc0",
         "occurrence_id": f"s1@{i}", "decided_at": at, "result": "fired", "count": 1,
         "recorded_at": at + timedelta(seconds=i)}
        for i, at in enumerate([OLD] * 4 + [RECENT] * 30)
    ])  # fmt: skip
    conn.execute(enroll_tokens.insert().values(
        token_id="t1", token_sha256="0" * 64, groups=[], created_by="admin", created_at=OLD,
        expires_at=OLD + timedelta(days=1), cancelled=False,
    ))  # fmt: skip


def counts(conn: Connection) -> dict[str, int]:
    tables = {
        "results": results_table, "executions": executions_table,
        "inventory_history": inventory_history, "audit": audit,
        "schedule_decisions": schedule_decisions,
        "agent_schedule_decisions": agent_schedule_decisions, "enroll_tokens": enroll_tokens,
    }  # fmt: skip
    return {
        name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
        for name, t in tables.items()
    }


class Outputs:
    """A stand-in for the outputs object store: remembers what was deleted."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete(self, name: str) -> None:
        self.deleted.append(name)


POLICY = parse_overrides([
    "batch=10", "results.max_rows=12", "executions.max_rows=4", "inventory_history.max_rows=5",
    "audit.max_rows=10", "schedule_decisions.max_rows=20", "agent_schedule_decisions.max_rows=25",
])  # fmt: skip


async def test_one_pass_brings_every_table_within_its_limits(db: Database) -> None:
    await db.write(seed)
    outputs = Outputs()

    async def store_getter() -> Any:
        return outputs

    metrics = Metrics()
    worker = RetentionWorker(db, policy=POLICY, clock=lambda: NOW, outputs=store_getter,
                             observer=metrics)  # fmt: skip
    report = await worker.run_once()
    after = await db.read(counts)
    stuck = await db.read(lambda c: results.results_of_exec(c, "stuck"))

    # By age: every OLD row but the stuck exec and its results; then by count.
    assert after == {
        "results": 12,  # 6 of the exec that never ended + the newest 6 of the rest
        "executions": 4,  # the stuck one and the 3 newest ended ones
        "inventory_history": 5,
        "audit": 10,
        "schedule_decisions": 40,  # 20 per schedule
        "agent_schedule_decisions": 25,
        "enroll_tokens": 0,
    }
    assert len(stuck) == 6
    assert sorted(outputs.deleted) == [f"out-old{i}-pc{j}" for i in range(4) for j in range(2)]
    assert report.objects == 8
    assert report.batches > 10  # small batches, not one long transaction
    assert report.pruned["audit"] == 30
    assert report.pruned["results"] == 8 + 9  # the old execs', then 9 over the count

    text = metrics.render().decode()
    for table, n in report.pruned.items():
        assert f'kanade_retention_pruned_rows_total{{table="{table}"}} {float(n)}' in text
    assert "kanade_retention_deleted_objects_total 8.0" in text
    assert 'kanade_retention_runs_total{outcome="ok"} 1.0' in text
    last_at = re.search(r"^kanade_retention_last_run_timestamp_seconds (\S+)$", text, re.M)
    assert last_at is not None and float(last_at.group(1)) == NOW.timestamp()
    batches = re.search(r"^kanade_retention_batch_seconds_count (\S+)$", text, re.M)
    assert batches is not None and float(batches.group(1)) == report.batches

    last = await db.read(store.last_run)
    assert last is not None and last["pruned"] == report.pruned
    assert last["objects"] == 8
    assert await db.read(store.audit_pruned_through) == 30


async def test_limits_turned_off_keep_everything(db: Database) -> None:
    await db.write(seed)
    before = await db.read(counts)
    off = [f"{t}.max_age=off" for t in before] + [
        f"{t}.max_rows=off" for t in before if t != "enroll_tokens"
    ]
    worker = RetentionWorker(db, policy=parse_overrides(off), clock=lambda: NOW)
    report = await worker.run_once()
    assert await db.read(counts) == before
    assert report.pruned == {}


async def test_other_writes_get_in_between_batches(db: Database) -> None:
    await db.write(lambda c: insert_audit(c, [
        {"seq": s, "action": "x", "actor": "bob", "at": OLD, "details": {}, "recorded_at": OLD}
        for s in range(1, 4001)
    ]))  # fmt: skip
    worker = RetentionWorker(db, policy=parse_overrides(["batch=50"]), clock=lambda: NOW)
    pass_ = asyncio.create_task(worker.run_once())
    done_while_pruning = 0
    for i in range(20):
        key = f"probe{i}"
        await db.write(
            lambda c, key=key: projection_state.set_state(c, key, "1", NOW)  # type: ignore[misc]
        )
        if not pass_.done():
            done_while_pruning += 1
    report = await pass_
    assert report.pruned == {"audit": 4000} and report.batches >= 80
    assert done_while_pruning == 20  # none of them waited for the whole pass


def test_pruning_gives_way_to_waiting_writes_within_bounds() -> None:
    assert pause_after(0.1, contended=False) == MIN_PAUSE_S  # nobody waits: go on
    assert pause_after(0.1, contended=True) == 0.1 * 9  # a tenth of the writer's time
    assert pause_after(200.0, contended=True) == MAX_PAUSE_S  # a stalled disk, not a rule
