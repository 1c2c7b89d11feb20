"""``/api/exec``, ``/api/run`` and ``/api/executions``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from kanade.backend.api.bodies import ExecBody, RunBody
from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.request_context import current_actor
from kanade.backend.errors import Forbidden, NotFound
from kanade.backend.store import executions
from kanade.backend.store import results as result_rows

router = APIRouter(prefix="/api", tags=["executions"])

Limit = Annotated[int, Query(ge=1, le=1000)]
# Bounded: an offset beyond a 64-bit integer must be a 400, not a database overflow.
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


@router.post("/exec/{job_id}", status_code=201)
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


@router.post("/run", status_code=201)
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
    )
    services.metrics.execs.labels(kind="adhoc").inc()
    return created.to_dict()


@router.get("/executions")
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


@router.get("/executions/{exec_id}")
async def get_execution(
    exec_id: str,
    services: ServicesDep,
    results: Annotated[
        bool, Query(description="include per-pc results (false: counters only, cheap to poll)")
    ] = True,
) -> dict[str, Any]:
    """The exec row plus one entry per pc: its result row, or ``pending`` for each
    expected pc that has not reported yet."""

    def load(conn: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        row = executions.get_execution(conn, exec_id)
        with_results = row is not None and results
        return row, (result_rows.results_of_exec(conn, exec_id) if with_results else [])

    row, rows = await services.db.read(load)
    if row is None:
        raise NotFound(f"execution {exec_id!r} not found", exec_id=exec_id)
    if not results:
        return row
    reported = {r["pc_id"] for r in rows}
    pending = [
        {"pc_id": pc, "exec_id": exec_id, "state": "pending"}
        for pc in row["expected_pcs"]
        if pc not in reported
    ]
    return {**row, "results": sorted([*rows, *pending], key=lambda r: str(r["pc_id"]))}
