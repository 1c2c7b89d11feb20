"""``/api/results``, ``/api/agents`` and ``/api/schemas``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.params import PcId, ResultId
from kanade.backend.api.schemas.execs import ResultRow
from kanade.backend.api.schemas.fleet import Agent, AgentPage, JsonSchema, ResultPage
from kanade.backend.errors import NotFound
from kanade.backend.store import agents, results
from kanade.core.fleet import agent_status
from kanade.core.instants import system_clock
from kanade.core.schemas import job_json_schema, schedule_json_schema

router = APIRouter(prefix="/api", tags=["fleet"])

Limit = Annotated[int, Query(ge=1, le=1000)]
# Bounded: an offset beyond a 64-bit integer must be a 400, not a database overflow.
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


@router.get("/results", response_model=ResultPage)
async def list_results(
    services: ServicesDep,
    exec_id: str | None = None,
    pc_id: str | None = None,
    job_id: str | None = None,
    exit_code: Annotated[int | None, Query(ge=-(2**31), le=2**31 - 1)] = None,
    state: Literal["in_flight", "finished", "reaped", "skipped"] | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Results, newest first (by the stream time they were recorded)."""
    page = await services.db.read(
        lambda conn: results.list_results(
            conn,
            exec_id=exec_id,
            pc_id=pc_id,
            job_id=job_id,
            exit_code=exit_code,
            state=state,
            limit=limit,
            offset=offset,
        )
    )
    return page.to_dict()


@router.get("/results/{result_id}", response_model=ResultRow)
async def get_result(result_id: ResultId, services: ServicesDep) -> dict[str, Any]:
    row = await services.db.read(lambda conn: results.get_result(conn, result_id))
    if row is None:
        raise NotFound(f"result {result_id!r} not found", result_id=result_id)
    return row


def _with_status(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    stopped = row.get("stopped_at") is not None
    return {**row, "status": agent_status(row["last_seen"], now, stopped=stopped)}


@router.get("/agents", response_model=AgentPage)
async def list_agents(
    services: ServicesDep,
    status: Literal["alive", "stale", "offline"] | None = None,
    group: str | None = None,
    os_family: str | None = None,
    version: Annotated[str | None, Query(description="agent version")] = None,
    # Larger than other lists: a fleet view may want every agent in one page.
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Agents with ``status`` alive (heartbeat ≤ 2 min), stale (≤ 10 min) or offline."""
    now = system_clock()
    page = await services.db.read(
        lambda conn: agents.page_agents(
            conn,
            now=now,
            status=status,
            group=group,
            os_family=os_family,
            version=version,
            limit=limit,
            offset=offset,
        )
    )
    page.items[:] = [_with_status(r, now) for r in page.items]
    return page.to_dict()


@router.get("/agents/{pc_id}", response_model=Agent)
async def get_agent(pc_id: PcId, services: ServicesDep) -> dict[str, Any]:
    row = await services.db.read(lambda conn: agents.get_agent(conn, pc_id))
    if row is None:
        raise NotFound(f"agent {pc_id!r} has never sent a heartbeat", pc_id=pc_id)
    return _with_status(row, system_clock())


@router.get("/schemas/job", response_model=JsonSchema)
async def job_schema() -> dict[str, Any]:
    return job_json_schema()


@router.get("/schemas/schedule", response_model=JsonSchema)
async def schedule_schema() -> dict[str, Any]:
    return schedule_json_schema()
