"""Retention in a running backend (SPEC §4.12), in-process against a real broker: a pass
prunes old rows, deletes the pruned results' output objects and shows in ``/api/retention``
and ``/metrics``; operator-state rows it prunes leave tombstones in KV ``kanade_state`` and a
database wiped and rebuilt from the broker ends up within the limits again. Each runs on
SQLite and on PostgreSQL (SPEC §9)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.js.errors import NotFoundError
from sqlalchemy import Connection, func, select
from test_backend_projection import HELLO, eventually, send, settings_for

from kanade.backend.inprocess import InProcessBackend, in_process_backend
from kanade.backend.settings import Settings
from kanade.backend.store import executions, results, scheduling
from kanade.backend.store.audit import insert_audit
from kanade.backend.store.scheduling import DecisionRow
from kanade.backend.store.tables import results as results_table
from kanade.backend.store.tables import schedule_decisions
from kanade.bus import Bus
from kanade.core import subjects
from kanade.core.digests import sha256_hex
from kanade.core.ids import result_id_for
from kanade.core.models.opstate import StateDoc, state_key
from kanade.core.models.wire import Result, decode
from kanade.core.results import output_object_name
from kanade.core.retention import parse_overrides
from pgdb import wipe_store

pytestmark = pytest.mark.stores
GATED = {**HELLO, "id": "gated", "require_approval": True}
OLD = datetime.now(UTC) - timedelta(days=40)


def with_retention(settings: Settings, *overrides: str) -> Settings:
    return dataclasses.replace(settings, retention=parse_overrides(overrides))


async def metric(b: InProcessBackend, name: str, **labels: str) -> float:
    text = (await b.client.get("/metrics")).text
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{re.escape(name)}{re.escape('{' + sel + '}') if sel else ''} (\S+)$",
                  text, re.M)  # fmt: skip
    return float(m.group(1)) if m else 0.0


def _old_exec(conn: Connection, ref: str) -> None:
    """An exec that ended 40 days ago with two results, one with its stdout in the store;
    audit records older than a year."""
    pcs = ["pc1", "pc2"]
    executions.upsert_executions(conn, [{
        "exec_id": "old", "kind": "job", "job_id": "hello", "version": "1",
        "target": {"pcs": pcs}, "expected_pcs": pcs, "expected_count": 2, "status": "pending",
        "initiated_by": "bob", "schedule_id": None, "nominal_time": None, "created_at": OLD,
        "request_id": "r-old",
    }], OLD)  # fmt: skip
    results.upsert_finished(conn, [{
        "result_id": f"old-{pc}", "exec_id": "old", "request_id": "r-old", "pc_id": pc,
        "job_id": "hello", "version": "1", "state": "finished", "exit_code": 0,
        "skipped": False, "stdout": "head", "stderr": "", "stdout_bytes": 10**6,
        "stderr_bytes": 0, "stdout_ref": ref if pc == "pc1" else None, "stderr_ref": None,
        "started_at": OLD, "finished_at": OLD, "attempts": 1, "note": None,
        "schedule_id": None, "nominal_time": None, "recorded_at": OLD, "timeout_s": None,
    } for pc in pcs])  # fmt: skip
    executions.refresh_exec_counters(conn, ["old"], OLD)
    executions.mark_ended(conn, "old", OLD)
    year_ago = OLD - timedelta(days=365)  # audit is kept a year
    insert_audit(conn, [
        {"seq": s, "action": "x", "actor": "bob", "at": year_ago, "details": {},
         "recorded_at": year_ago}
        for s in (1, 2, 3)
    ])  # fmt: skip


async def test_a_pass_prunes_shows_itself_and_deletes_output_objects(
    nats_url: str, bus: Bus, store_url: str
) -> None:
    data = b"x" * 10_000
    ref = output_object_name("old-pc1", "stdout", sha256_hex(data))
    store = await bus.obj(subjects.OBJ_OUTPUTS)
    await store.put(ref, data)
    settings = with_retention(settings_for(nats_url, store_url), "interval=1s")
    async with in_process_backend(settings) as b:
        await b.services.db.write(lambda conn: _old_exec(conn, ref))

        async def pruned() -> bool:
            return await metric(b, "kanade_retention_pruned_rows_total", table="results") == 2

        await eventually(pruned, what="the old results pruned")

        async def pass_done() -> bool:
            executions = await metric(b, "kanade_retention_pruned_rows_total", table="executions")
            audit = await metric(b, "kanade_retention_pruned_rows_total", table="audit")
            return (executions, audit) == (1, 3)

        await eventually(pass_done, what="the old exec and audit records pruned")

        async def pass_ended() -> bool:  # the objects go, then the pass is recorded
            ended = await metric(b, "kanade_retention_last_run_timestamp_seconds") > 0
            shown = (await b.client.get("/api/retention")).json()["last_run"]
            return ended and shown is not None

        await eventually(pass_ended, what="a whole pass recorded")
        assert await metric(b, "kanade_retention_deleted_objects_total") == 1
        assert await metric(b, "kanade_retention_batch_seconds_count") > 0
        with pytest.raises(NotFoundError):
            await store.get(ref)
        assert (await b.client.get("/api/executions/old")).status_code == 404

        view = (await b.client.get("/api/retention")).json()
        assert view["tables"]["results"] == {
            "max_age": "30d", "max_rows": 10_000_000, "rows_per": "table", "oldest": None,
        }  # fmt: skip
        assert view["tables"]["schedule_decisions"]["rows_per"] == "schedule"
        assert view["interval"] == "1s" and view["batch"] == 500
        assert view["audit_pruned_through"] == 3
        assert view["last_run"]["finished_at"]


async def _reject(b: InProcessBackend) -> str:
    c = b.client
    # force: ghost-1 never reports (the test rejects the exec before it would run)
    r = await c.post("/api/exec/gated?force=true", json={"target": {"pcs": ["ghost-1"]}})
    assert r.status_code == 201, r.text
    exec_id = str(r.json()["exec_id"])
    r = await c.post(f"/api/executions/{exec_id}/reject", json={"reason": "no"})
    assert r.status_code == 200, r.text
    return exec_id


def _ghost_result(i: int) -> Result:
    now = datetime.now(UTC)
    return Result(
        result_id=result_id_for("r-ghost", f"pc{i}"), request_id="r-ghost", exec_id="ghost",
        pc_id=f"pc{i}", job_id="hello", version="1", exit_code=0, stdout="hi\n",
        stdout_bytes=3, started_at=now, finished_at=now,
    )  # fmt: skip


async def _state_doc(bus: Bus, kind: str, *ref: str) -> StateDoc:
    kv = await bus.kv(subjects.KV_STATE)
    entry = await kv.get(state_key(kind, list(ref)))
    assert entry.value is not None
    return decode(StateDoc, entry.value)


def _count(conn: Connection, table: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


async def test_a_rebuilt_database_is_back_within_the_limits(
    nats_url: str, bus: Bus, store_url: str
) -> None:
    first = with_retention(
        settings_for(nats_url, store_url),
        "interval=1s", "executions.max_rows=1", "results.max_rows=2",
        "schedule_decisions.max_rows=2",
    )  # fmt: skip
    async with in_process_backend(first) as b:
        for doc in (HELLO, GATED):
            assert (await b.client.post("/api/jobs", json=doc)).status_code in (200, 201)
        older = await _reject(b)
        newer = await _reject(b)
        for i in range(6):
            await send(bus, _ghost_result(i))
        rows = [
            DecisionRow("nightly", f"nightly@{i}", OLD, "skipped", "frozen", decided_at=OLD)
            for i in range(5)
        ]
        await b.services.db.write(lambda c: scheduling.record_decisions(c, rows, OLD))

        async def pruned() -> bool:
            gone = (await b.client.get(f"/api/approvals/{older}")).status_code == 404
            counts = await b.services.db.read(
                lambda c: (_count(c, results_table), _count(c, schedule_decisions))
            )
            return gone and counts[0] <= 2 and counts[1] == 2

        await eventually(pruned, what="an exec, results and decisions over the counts pruned")

        async def mirrored() -> bool:
            gone = await _state_doc(bus, "approval", older)
            schedule = await _state_doc(bus, "schedule", "nightly")
            return gone.deleted and len(schedule.rows["schedule_decisions"]) == 2

        # What the database pruned, KV follows: a tombstone, a shorter decisions log.
        await eventually(mirrored, what="the operator-state documents written",
                         tolerate=(NotFoundError,))  # written after the pass, not with it
    await asyncio.to_thread(wipe_store, store_url)

    # Rebuilt: the stream brings back all six results and both execs, KV one approval and
    # two decisions. Decisions are not limited now, so two is what the document held.
    second = with_retention(
        settings_for(nats_url, store_url),
        "interval=1s", "executions.max_rows=1", "results.max_rows=2",
        "schedule_decisions.max_rows=off",
    )  # fmt: skip
    async with in_process_backend(second) as b:

        async def back_within_limits() -> bool:
            approval = (await b.client.get(f"/api/approvals/{newer}")).status_code
            counts = await b.services.db.read(
                lambda c: (_count(c, results_table), _count(c, schedule_decisions))
            )
            execs = (await b.client.get("/api/executions")).json()["total"]
            # At most 2 results: pruning the older exec may take its no_result row too.
            return approval == 200 and counts[0] <= 2 and counts[1] == 2 and execs == 1

        await eventually(back_within_limits, what="the rebuilt database within the limits")
        assert (await b.client.get(f"/api/approvals/{older}")).status_code == 404
