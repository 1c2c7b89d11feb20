"""``/api/exec``, ``/api/run`` and ``/api/executions``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.request_context import current_actor
from kanade.backend.api.schemas.execs import ExecCreated, ExecutionDetail, ExecutionPage
from kanade.backend.api.schemas.requests import ExecBody, RunBody
from kanade.backend.errors import Forbidden
from kanade.backend.services.execution_detail import execution_detail
from kanade.backend.store import executions

router = APIRouter(prefix="/api", tags=["executions"])

Limit = Annotated[int, Query(ge=1, le=1000)]
# Bounded: an offset beyond a 64-bit integer must be a 400, not a database overflow.
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


@router.post("/exec/{job_id}", status_code=201, response_model=ExecCreated)
async def exec_job(
    job_id: str, body: ExecBody, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Dispatch a catalog job: pins its version, then publishes the commands — or, with
    ``rollout``, sends it in waves (``GET /api/rollouts/{exec_id}``); a job with
    ``require_approval`` waits in ``awaiting_approval`` for another operator."""
    if body.urgent and getattr(request.state, "role", None) != "admin":
        raise Forbidden("urgent execs (bypassing max_local_concurrent) need role admin")
    created = await services.execs.exec_job(
        job_id,
        body.target,
        jitter=body.jitter,
        starting_deadline=body.starting_deadline,
        actor=current_actor(),
        rollout=body.rollout,
        urgent=body.urgent,
    )
    services.metrics.execs.labels(kind="job").inc()
    return created.to_dict()


@router.post("/run", status_code=201, response_model=ExecCreated)
async def run_script(body: RunBody, services: ServicesDep) -> dict[str, Any]:
    """Run an ad-hoc script on a target (an exec of a one-off job)."""
    created = await services.execs.run_adhoc(
        body.script,
        body.target,
        shell=body.shell,
        timeout=body.timeout,
        env=body.env,
        cwd=body.cwd,
        actor=current_actor(),
        starting_deadline=body.starting_deadline,
    )
    services.metrics.execs.labels(kind="adhoc").inc()
    return created.to_dict()


@router.get("/executions", response_model=ExecutionPage)
async def list_executions(
    services: ServicesDep,
    job_id: str | None = None,
    status: str | None = None,
    initiated_by: str | None = None,
    since: Annotated[datetime | None, Query(description="created at or after (ISO 8601)")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    page = await services.db.read(
        lambda conn: executions.list_executions(
            conn,
            job_id=job_id,
            status=status,
            initiated_by=initiated_by,
            since=since,
            limit=limit,
            offset=offset,
        )
    )
    return page.to_dict()


@router.get(
    "/executions/{exec_id}",
    response_model=ExecutionDetail,
    response_model_exclude_unset=True,  # no results key with results=false
)
async def get_execution(
    exec_id: str,
    services: ServicesDep,
    results: Annotated[
        bool, Query(description="include per-pc results (false: counters only, cheap to poll)")
    ] = True,
) -> dict[str, Any]:
    """The exec row plus one entry per pc: its result row, or ``pending`` for each
    expected pc that has not reported yet."""
    return await execution_detail(services.db, exec_id, results=results)
