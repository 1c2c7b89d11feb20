"""``/api/schedules`` (SPEC §2.2, §4.4, §4.5) and schedule-set drift (``/api/agents/drift``).

Schedules are written as YAML or JSON, validated strictly (every field path and reason in
a 400, ``job_id`` checked against the job catalog) and stored in KV ``kanade_schedules``.
Reads add what the scheduler knows: the next fire (gated), the last fire, fired / skipped
/ missed counters and the recent decisions with their reasons. The use cases are in
:mod:`kanade.backend.services.schedules`; this module reads the request and this
backend's scheduler (its zone and reconcile poll).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.params import PcId, ScheduleId
from kanade.backend.api.request_context import request_actor
from kanade.backend.api.schemas.schedules import (
    Drift,
    DriftList,
    ScheduleDeleted,
    ScheduleDisabled,
    ScheduleList,
    SchedulePreview,
    SchedulerStatus,
    ScheduleValidated,
    ScheduleView,
)
from kanade.backend.catalog.schedules import schedule_document
from kanade.backend.errors import NotFound, UnsupportedFormat
from kanade.backend.services.container import Services
from kanade.backend.services.schedules import ScheduleService
from kanade.backend.workers.scheduler import Scheduler
from kanade.core.models.schedule import Schedule
from kanade.core.scheduling import RECONCILE_POLL
from kanade.core.scheduling.timezones import local_zone
from kanade.core.validation import load_document

router = APIRouter(prefix="/api", tags=["schedules"])

ACCEPTED_TYPES = (
    "application/json",
    "application/yaml",
    "application/x-yaml",
    "text/yaml",
    "text/plain",
)

_DOCUMENT_BODY = {
    "requestBody": {
        "required": True,
        "description": "a schedule (SPEC §2.2), YAML or JSON",
        "content": {
            t: {
                "schema": {
                    "type": "object",
                    "description": "JSON Schema: GET /api/schemas/schedule",
                }
            }
            for t in ("application/json", "application/yaml")
        },
    }
}


def _scheduler(request: Request) -> Scheduler | None:
    return getattr(request.app.state, "scheduler", None)


def _poll(request: Request) -> timedelta:
    scheduler = _scheduler(request)
    return RECONCILE_POLL if scheduler is None else scheduler.reconcile_poll


def _zone(request: Request) -> tzinfo:
    scheduler = _scheduler(request)
    return local_zone() if scheduler is None else scheduler.local_tz


def _service(request: Request, services: Services) -> ScheduleService:
    return ScheduleService(
        services.db, services.link.bus, local_tz=_zone(request), reconcile_poll=_poll(request)
    )


async def _parse_body(request: Request, schedules: ScheduleService) -> Schedule:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media not in ACCEPTED_TYPES:
        raise UnsupportedFormat(
            f"content type {media!r} is not accepted; send the schedule as one of: "
            + ", ".join(ACCEPTED_TYPES)
        )
    # Off the event loop: a document is up to 2 MiB of YAML (SPEC §8.3).
    body = await request.body()
    return await schedules.parse(await asyncio.to_thread(load_document, body, kind="schedule"))


# --- catalog ---------------------------------------------------------------------------------
@router.post(
    "/schedules",
    status_code=201,
    response_model=ScheduleView,
    responses={200: {"model": ScheduleView, "description": "identical to the stored one"}},
    openapi_extra=_DOCUMENT_BODY,
)
async def create_schedule(request: Request, services: ServicesDep) -> JSONResponse:
    """Create a schedule. 201 when stored, 200 when identical to the stored one; 400 lists
    every invalid field (unknown job_id included); 409 when the id holds another schedule."""
    schedules = _service(request, services)
    schedule = await _parse_body(request, schedules)
    item, created = await schedules.create(schedule, actor=request_actor(request))
    return JSONResponse(item, status_code=201 if created else 200)


@router.post("/schedules/validate", response_model=ScheduleValidated, openapi_extra=_DOCUMENT_BODY)
async def validate_schedule(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Validate without storing (400 with every path and reason when invalid)."""
    schedule = await _parse_body(request, _service(request, services))
    return {"ok": True, "id": schedule.id, "schedule": schedule_document(schedule)}


@router.get("/schedules", response_model=ScheduleList, response_model_exclude_unset=True)
async def list_schedules(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Every schedule with its status: next fire, last fire, fired/skipped/missed counts."""
    items = await _service(request, services).list_all()
    return {"items": items, "total": len(items)}


@router.get(
    "/schedules/{schedule_id}",
    response_model=ScheduleView,
    response_model_exclude_unset=True,
)
async def get_schedule(
    schedule_id: ScheduleId,
    request: Request,
    services: ServicesDep,
    decisions: Annotated[int, Query(ge=0, le=200, description="recent decisions")] = 20,
) -> dict[str, Any]:
    """One schedule, its status and its recent decisions (fired, skipped with the reason —
    deadline 125, freeze, window … — missed, duplicate)."""
    return await _service(request, services).get(schedule_id, decisions=decisions)


@router.put(
    "/schedules/{schedule_id}",
    response_model=ScheduleView,
    response_model_exclude_unset=True,
    openapi_extra=_DOCUMENT_BODY,
)
async def replace_schedule(
    schedule_id: ScheduleId, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Replace a schedule (the body's id must match). Edits apply from the next tick."""
    schedules = _service(request, services)
    schedule = await _parse_body(request, schedules)
    return await schedules.replace(schedule_id, schedule, actor=request_actor(request))


@router.delete("/schedules/{schedule_id}", response_model=ScheduleDeleted)
async def delete_schedule(
    schedule_id: ScheduleId, request: Request, services: ServicesDep
) -> dict[str, Any]:
    return await _service(request, services).delete(schedule_id, actor=request_actor(request))


@router.post(
    "/schedules/{schedule_id}/enable",
    response_model=ScheduleView,
    response_model_exclude_unset=True,
)
async def enable_schedule(
    schedule_id: ScheduleId, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Enable: it fires from its next occurrence after now (nothing missed is caught up)."""
    return await _service(request, services).enable(schedule_id, actor=request_actor(request))


@router.post(
    "/schedules/{schedule_id}/disable",
    response_model=ScheduleDisabled,
    response_model_exclude_unset=True,
)
async def disable_schedule(
    schedule_id: ScheduleId,
    request: Request,
    services: ServicesDep,
    cascade: Annotated[bool, Query(description="also revoke the schedule's job")] = False,
    cascade_kill: Annotated[
        bool, Query(description="also revoke the job and kill the schedule's in-flight runs")
    ] = False,
) -> dict[str, Any]:
    """Disable (soft: nothing fires any more, runs in flight continue). ``cascade`` revokes
    the job (agents skip it, 126, even offline ones with cached state); ``cascade_kill``
    does that and kills every in-flight exec of this schedule."""
    schedules = _service(request, services)
    actor = request_actor(request)
    old, new = await schedules.disable(schedule_id)
    revoked = None
    if cascade or cascade_kill:
        revoked = await services.revocations.revoke(
            new.job_id,
            reason=f"schedule {schedule_id} disabled with "
            + ("--cascade-kill" if cascade_kill else "--cascade"),
            actor=actor,
        )
    killed: list[dict[str, Any]] = []
    if cascade_kill:
        for exec_id in await schedules.in_flight_execs(schedule_id):
            try:
                killed.append(await services.kills.kill(exec_id, actor=actor))
            except NotFound:
                continue
    return await schedules.disabled(
        old,
        new,
        actor=actor,
        cascade=cascade,
        cascade_kill=cascade_kill,
        revoked=revoked,
        killed=killed,
    )


@router.get(
    "/schedules/{schedule_id}/preview",
    response_model=SchedulePreview,
    response_model_exclude_unset=True,
)
async def preview_schedule(
    schedule_id: ScheduleId,
    request: Request,
    services: ServicesDep,
    n: Annotated[int, Query(ge=1, le=500, description="how many fire times")] = 10,
) -> dict[str, Any]:
    """The next ``n`` fire times (in the schedule's zone and UTC), gated by active, window,
    skip dates and the freeze; for ``per_pc`` / ``per_target``, every targeted pc with
    ``would_fire`` and why (offline, dispatched and not reported, last success …)."""
    return await _service(request, services).preview(schedule_id, n=n)


@router.get("/scheduler", response_model=SchedulerStatus, response_model_exclude_unset=True)
async def scheduler_status(request: Request) -> dict[str, Any]:
    """This backend's scheduler: whether it holds the lease (leads) and who does."""
    scheduler = _scheduler(request)
    if scheduler is None:
        return {"enabled": False, "leader": False}
    return {"enabled": True, **scheduler.status()}


# --- drift ---------------------------------------------------------------------------------
@router.get("/agents/drift", response_model=DriftList)
async def agents_drift(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Per agent: expected vs applied schedule-set version (``runs_on: agent`` schedules)."""
    items = await _service(request, services).drift()
    return {
        "items": items,
        "total": len(items),
        "drifted": sum(1 for i in items if i["drift"]),
    }


@router.get("/agents/{pc_id}/drift", response_model=Drift)
async def agent_drift(pc_id: PcId, request: Request, services: ServicesDep) -> dict[str, Any]:
    (item,) = await _service(request, services).drift(pc_id)
    return item
