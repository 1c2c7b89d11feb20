"""``/api/exec``, ``/api/run`` and ``/api/executions``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.params import ExecId, IsoInstant, JobId
from kanade.backend.api.request_context import current_actor, is_admin
from kanade.backend.api.schemas.execs import (
    ExecCreated,
    ExecScriptText,
    ExecutionDetail,
    ExecutionPage,
)
from kanade.backend.api.schemas.requests import ExecBody, RunBody
from kanade.backend.errors import Forbidden
from kanade.backend.services.execution_detail import (
    MAX_WAIT_S,
    execution_detail,
    execution_progress,
)
from kanade.backend.store import executions
from kanade.core.statuses import ExecStatus

router = APIRouter(prefix="/api", tags=["executions"])

Limit = Annotated[int, Query(ge=1, le=1000)]
# Bounded: an offset beyond a 64-bit integer must be a 400, not a database overflow.
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]
Force = Annotated[
    bool,
    Query(description="send even to pcs or groups nothing knows (typos are refused otherwise), "
          "and an ad-hoc run no alive agent matches"),
]


@router.post("/exec/{job_id}", status_code=201, response_model=ExecCreated)
async def exec_job(
    job_id: JobId, body: ExecBody, request: Request, services: ServicesDep, force: Force = False
) -> dict[str, Any]:
    """Dispatch a catalog job: pins its version, then publishes the commands — or, with
    ``rollout``, sends it in waves (``GET /api/rollouts/{exec_id}``); a job with
    ``require_approval`` waits in ``awaiting_approval`` for another operator. A pc or group
    nothing knows is refused with its close matches unless ``force``; a revoked job is
    refused."""
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
        force=force,
    )
    services.metrics.execs.labels(kind="job").inc()
    return created.to_dict()


@router.post("/run", status_code=201, response_model=ExecCreated)
async def run_script(
    body: RunBody, request: Request, services: ServicesDep, force: Force = False
) -> dict[str, Any]:
    """Run an ad-hoc script on a target (an exec of a one-off job). The least role allowed
    is the ``adhoc_run_role`` setting (``--adhoc-run-role``; default operator). Refused,
    with nothing created, when the target names a pc or group nothing knows or no alive
    agent matches it — unless ``force``."""
    needed = services.settings.adhoc_run_role
    if needed == "admin" and not is_admin(request):
        raise Forbidden(
            "ad-hoc runs need role admin on this backend (--adhoc-run-role admin); "
            "run a catalog job instead (kanade exec)"
        )
    created = await services.execs.run_adhoc(
        body.script,
        body.target,
        shell=body.shell,
        timeout=body.timeout,
        env=body.env,
        cwd=body.cwd,
        actor=current_actor(),
        starting_deadline=body.starting_deadline,
        force=force,
    )
    services.metrics.execs.labels(kind="adhoc").inc()
    return created.to_dict()


@router.get("/executions", response_model=ExecutionPage)
async def list_executions(
    services: ServicesDep,
    job_id: str | None = None,
    status: ExecStatus | None = None,
    initiated_by: str | None = None,
    since: Annotated[IsoInstant | None, Query(description="created at or after (ISO 8601)")] = None,
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
    exec_id: ExecId,
    services: ServicesDep,
    results: Annotated[
        bool, Query(description="include per-pc results (false: counters only, cheap to poll)")
    ] = True,
    done_above: Annotated[
        int | None,
        Query(
            ge=0,
            le=2**31 - 1,
            description="answer once more than this many pcs are done (finished, or closed "
            "without a result), or the exec ended, or `wait` passed — one request per "
            "result instead of polling",
        ),
    ] = None,
    wait: Annotated[
        float,
        Query(ge=0, le=MAX_WAIT_S, description="seconds to wait for `done_above` (at most 30)"),
    ] = 0.0,
) -> dict[str, Any]:
    """The exec row plus one entry per pc: its result row, or ``pending`` for each
    expected pc that has not reported yet. With ``done_above`` and ``wait``: answered when
    the exec moved past that count (a long poll)."""
    if done_above is None or wait == 0:
        return await execution_detail(services.db, exec_id, results=results)
    return await execution_progress(
        services.db, exec_id, results=results, done_above=done_above, wait_s=wait
    )


@router.get("/executions/{exec_id}/script", response_model=ExecScriptText)
async def get_execution_script(exec_id: ExecId, services: ServicesDep) -> dict[str, Any]:
    """The script the execution runs: its text (inline, or read from the scripts store and
    checked against the pinned sha256), shell and digest. Role operator — a script may
    hold a secret, so viewers see only its sha256 (docs/dashboard.md, "Script text")."""
    return await services.exec_scripts.of_exec(exec_id)
