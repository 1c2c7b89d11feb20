"""Real responses match the schemas the OpenAPI document declares for them.

A real backend (nats-server, SQLite) serves a small fleet: one agent's heartbeat, an
ad-hoc exec still waiting for its result, a job, an audit trail. For each route the body
must read back through its schema unchanged — every key declared, no key lost, values
(instants included) written exactly as the service built them.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from kanade.backend.api.schemas.audit import AuditPage
from kanade.backend.api.schemas.dashboard import DashboardSummary
from kanade.backend.api.schemas.execs import ExecCreated, ExecutionDetail, ExecutionPage
from kanade.backend.api.schemas.fleet import Agent, AgentPage
from kanade.backend.api.schemas.freeze import FreezeCleared, FreezeStatus
from kanade.backend.api.schemas.health import Health
from kanade.backend.api.schemas.jobs import JobDocument, JobList
from kanade.backend.inprocess import InProcessBackend
from kanade.bus import Bus
from kanade.core import subjects
from kanade.core.models.wire import Heartbeat, encode
from polling import eventually as shared_eventually

pytestmark = pytest.mark.stores  # SQLite and PostgreSQL (tests/pgdb.py)

eventually = functools.partial(shared_eventually, timeout=15.0)

HELLO = {
    "id": "hello",
    "version": "1",
    "execute": {"shell": "sh", "script": "echo hello", "timeout": "30s"},
}


def reads_back(schema: type[BaseModel], body: Any) -> None:
    """``body`` validates against ``schema`` and is written back byte for byte."""
    again = schema.model_validate(body).model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert again == body
    assert list(again) == list(body)  # key order too


def declared(spec: dict[str, Any], method: str, path: str, code: str = "200") -> str:
    content = spec["paths"][path][method]["responses"][code]["content"]["application/json"]
    return str(content["schema"]["$ref"]).rsplit("/", 1)[-1]


async def test_responses_read_back_through_their_declared_schemas(
    backend: InProcessBackend, bus: Bus
) -> None:
    c = backend.client
    spec = (await c.get("/api/openapi.json")).json()
    hb = Heartbeat(
        pc_id="pc1",
        agent_version="0.1.0",
        hostname="pc1.example",
        os_family="linux",
        os_version="6.1",
        groups=["lab"],
        sent_at=datetime.now(UTC),
    )
    await bus.nc.publish(subjects.heartbeat_subject("pc1"), encode(hb))

    async def agent_seen() -> bool:
        return (await c.get("/api/agents/pc1")).status_code == 200

    await eventually(agent_seen, what="heartbeat projected")

    checks: list[tuple[type[BaseModel], str, str, Any]] = []
    health = (await c.get("/health")).json()
    checks.append((Health, "get", "/health", health))
    checks.append((AgentPage, "get", "/api/agents", (await c.get("/api/agents")).json()))
    checks.append((Agent, "get", "/api/agents/{pc_id}", (await c.get("/api/agents/pc1")).json()))

    r = await c.post("/api/jobs", json=HELLO)
    assert r.status_code == 201, r.text
    checks.append((JobDocument, "post", "/api/jobs", r.json()))
    checks.append((JobList, "get", "/api/jobs", (await c.get("/api/jobs")).json()))

    r = await c.post("/api/run", json={"script": "true", "target": {"pcs": ["pc1"]}})
    assert r.status_code == 201, r.text
    created = r.json()
    checks.append((ExecCreated, "post", "/api/run", created))

    async def exec_projected() -> bool:
        return (await c.get(f"/api/executions/{created['exec_id']}")).status_code == 200

    await eventually(exec_projected, what="exec projected")
    detail = (await c.get(f"/api/executions/{created['exec_id']}")).json()
    assert detail["results"] == [
        {"pc_id": "pc1", "exec_id": created["exec_id"], "state": "pending"}
    ]
    checks.append((ExecutionDetail, "get", "/api/executions/{exec_id}", detail))
    counters = (await c.get(f"/api/executions/{created['exec_id']}?results=false")).json()
    assert "results" not in counters
    reads_back(ExecutionDetail, counters)
    executions = (await c.get("/api/executions")).json()
    checks.append((ExecutionPage, "get", "/api/executions", executions))

    frozen = await c.put("/api/freeze", json={"reason": "test"})
    checks.append((FreezeStatus, "put", "/api/freeze", frozen.json()))
    thawed = await c.delete("/api/freeze")
    checks.append((FreezeCleared, "delete", "/api/freeze", thawed.json()))

    async def audited() -> bool:
        return (await c.get("/api/audit")).json()["total"] >= 2

    await eventually(audited, what="audit projected")
    checks.append((AuditPage, "get", "/api/audit", (await c.get("/api/audit")).json()))
    summary = (await c.get("/api/dashboard/summary")).json()
    checks.append((DashboardSummary, "get", "/api/dashboard/summary", summary))

    for schema, method, path, body in checks:
        code = "201" if (method, path) in {("post", "/api/jobs"), ("post", "/api/run")} else "200"
        assert declared(spec, method, path, code) == schema.__name__, path
        reads_back(schema, body)
    # Instants are written as the services always wrote them (isoformat, +00:00).
    assert executions["items"][0]["created_at"].endswith("+00:00")
