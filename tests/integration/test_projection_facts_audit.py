"""Inventory facts, check statuses and the audit log are projections (SPEC §4.2):
they follow the results and records on the streams, ignore arrival order and
redelivery, and a wiped database re-projects to the very same rows."""

from __future__ import annotations

import asyncio
import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kanade.backend.inprocess import InProcessBackend, in_process_backend
from kanade.backend.settings import Settings
from kanade.bus import Bus
from kanade.core import subjects
from kanade.core.ids import result_id_for
from kanade.core.models.wire import Result, encode
from pgdb import wipe_store
from polling import eventually as shared_eventually
from secured import authority_dir

pytestmark = pytest.mark.stores  # SQLite and PostgreSQL (tests/pgdb.py)

DEADLINE = 20.0
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

INVENTORY_JOB = {
    "id": "hw",
    "version": "1",
    "execute": {"shell": "sh", "script": "echo '{}'", "timeout": "30s"},
    "inventory": {"display": ["cpus"], "summary": ["cpus"]},
}
CHECK_JOB = {
    "id": "disk-check",
    "version": "1",
    "execute": {"shell": "sh", "script": "echo ok", "timeout": "30s"},
    "check": {"name": "disk", "status_field": "state", "detail_field": "why"},
}


eventually = functools.partial(shared_eventually, timeout=DEADLINE)


def settings_for(nats_url: str, db: str) -> Settings:
    return Settings.from_db_arg(
        authority_dir=authority_dir(), nats_url=nats_url, db=str(db), heartbeat_flush_s=0.05
    )


async def exec_job(
    backend: InProcessBackend, job: dict[str, Any], pcs: list[str]
) -> dict[str, Any]:
    assert (await backend.client.post("/api/jobs", json=job)).status_code in (200, 201)
    # force: these pcs never report (the test plays their results)
    r = await backend.client.post(
        f"/api/exec/{job['id']}?force=true", json={"target": {"pcs": pcs}}
    )
    assert r.status_code == 201, r.text
    return dict((await backend.client.get(f"/api/executions/{r.json()['exec_id']}")).json())


async def report(
    bus: Bus, ex: dict[str, Any], pc: str, stdout: str, *, exit_code: int = 0, minute: int = 0
) -> None:
    res = Result(
        result_id=result_id_for(ex["request_id"], pc),
        request_id=ex["request_id"],
        exec_id=ex["exec_id"],
        pc_id=pc,
        job_id=ex["job_id"],
        version=ex["version"],
        exit_code=exit_code,
        stdout=stdout,
        stdout_bytes=len(stdout),
        started_at=T0 + timedelta(minutes=minute),
        finished_at=T0 + timedelta(minutes=minute, seconds=1),
    )
    await bus.publish_js(subjects.result_subject(pc), encode(res), msg_id=res.result_id)


async def views(b: InProcessBackend) -> dict[str, Any]:
    async def get(path: str, **params: Any) -> Any:
        r = await b.client.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    return {
        "inventory": await get("/api/inventory"),
        "pc1": await get("/api/inventory/pc1", history_limit=100),
        "checks": await get("/api/checks"),
        "audit": await get("/api/audit", limit=1000),
    }


async def test_facts_checks_and_audit_survive_a_wipe(
    nats_url: str, bus: Bus, store_url: str
) -> None:
    db = store_url
    async with in_process_backend(settings_for(nats_url, db)) as first:
        new = await exec_job(first, INVENTORY_JOB, ["pc1", "pc2"])
        assert new["inventory_hint"] == {"display": ["cpus"], "summary": ["cpus"]}
        # The newer report (minute 5) arrives first; the older one must not win.
        await report(bus, new, "pc1", json.dumps({"cpus": 8}), minute=5)
        older = await exec_job(first, INVENTORY_JOB, ["pc1"])
        await report(bus, older, "pc1", json.dumps({"cpus": 4}), minute=1)
        await report(bus, new, "pc2", "not json")  # no facts, but the result counts
        failed = await exec_job(first, INVENTORY_JOB, ["pc2"])
        await report(bus, failed, "pc2", json.dumps({"cpus": 2}), exit_code=1)  # no facts

        chk = await exec_job(first, CHECK_JOB, ["pc1", "pc2"])
        await report(bus, chk, "pc1", json.dumps({"state": "fail", "why": "disk 99% full"}))
        await report(bus, chk, "pc2", json.dumps({"state": "ok"}))
        await report(bus, chk, "pc2", json.dumps({"state": "ok"}))  # redelivered

        async def projected() -> dict[str, Any] | None:
            v = await views(first)
            done = (
                v["pc1"]["history"]["total"] == 2
                and v["checks"]["total"] == 2
                and {a["action"] for a in v["audit"]["items"]} >= {"exec.create", "job.create"}
                and len([a for a in v["audit"]["items"] if a["action"] == "exec.create"]) == 4
            )
            return v if done else None

        before = await eventually(projected, "facts, checks and audit projected")
        execs = {
            e["exec_id"]: e for e in (await first.client.get("/api/executions")).json()["items"]
        }

    inv = {(i["pc_id"], i["job_id"]): i for i in before["inventory"]["items"]}
    assert set(inv) == {("pc1", "hw")}
    assert inv["pc1", "hw"]["facts"] == {"cpus": 8}
    assert inv["pc1", "hw"]["exec_id"] == new["exec_id"]
    assert [h["facts"] for h in before["pc1"]["history"]["items"]] == [{"cpus": 8}, {"cpus": 4}]
    checks = {(c["pc_id"], c["name"]): c for c in before["checks"]["items"]}
    assert checks["pc1", "disk"]["status"] == "fail"
    assert checks["pc1", "disk"]["detail"] == "disk 99% full"
    assert checks["pc2", "disk"]["status"] == "ok"
    assert all(a["recorded_at"] for a in before["audit"]["items"])

    await asyncio.to_thread(wipe_store, db)

    async with in_process_backend(settings_for(nats_url, db)) as second:

        async def rebuilt() -> dict[str, Any] | None:
            v = await views(second)
            same = (
                v["pc1"]["history"]["total"] == 2
                and v["checks"]["total"] == 2
                and v["audit"]["total"] == before["audit"]["total"]
                and v["inventory"]["total"] == 1
            )
            return v if same else None

        after = await eventually(rebuilt, "re-projection after the wipe")
        filtered = (await second.client.get("/api/checks", params={"status": "fail"})).json()
        assert [c["pc_id"] for c in filtered["items"]] == ["pc1"]
        by_job = (await second.client.get("/api/inventory", params={"job_id": "nope"})).json()
        assert by_job["total"] == 0
        execs_after = {
            e["exec_id"]: e for e in (await second.client.get("/api/executions")).json()["items"]
        }

    assert after == before  # same rows, same keys, same recorded_at
    for exec_id, row in execs.items():
        assert execs_after[exec_id]["inventory_hint"] == row["inventory_hint"]
        assert execs_after[exec_id]["check_hint"] == row["check_hint"]
