"""``/api/schedules`` (SPEC §2.2, §4.4, §4.5) and schedule-set drift (``/api/agents/drift``).

Schedules are written as YAML or JSON, validated strictly (every field path and reason in
a 400, ``job_id`` checked against the job catalog) and stored in KV ``kanade_schedules``.
Reads add what the scheduler knows: the next fire (gated), the last fire, fired / skipped
/ missed counters and the recent decisions with their reasons.
"""

from __future__ import annotations

import contextlib
import functools
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from kanade.backend.api.deps import ServicesDep
from kanade.backend.catalog import dispatch_state as state
from kanade.backend.catalog.schedules import ScheduleCatalog, kv_keys, schedule_document
from kanade.backend.errors import Invalid, NotFound, UnsupportedFormat
from kanade.backend.messaging.audit import publish_audit
from kanade.backend.services import schedule_views as views
from kanade.backend.services.container import Services
from kanade.backend.store import reads
from kanade.backend.store import scheduling as store
from kanade.backend.workers.scheduler import Scheduler
from kanade.backend.workers.scheduler.plans import backend_local_zone
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.models.schedule import Schedule
from kanade.core.scheduling import RECONCILE_POLL
from kanade.core.validation import load_document, parse_schedule

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


def _actor(request: Request) -> str:
    actor = getattr(request.state, "actor", None)
    return str(actor) if actor else "anonymous"


def _scheduler(request: Request) -> Scheduler | None:
    return getattr(request.app.state, "scheduler", None)


def _poll(request: Request) -> Any:
    scheduler = _scheduler(request)
    return RECONCILE_POLL if scheduler is None else scheduler.reconcile_poll


def _zone(request: Request) -> Any:
    scheduler = _scheduler(request)
    return backend_local_zone() if scheduler is None else scheduler.local_tz


async def _known_job_ids(bus: Bus) -> set[str]:
    return await kv_keys(bus, subjects.KV_JOBS)


async def _parse_body(request: Request, bus: Bus) -> Schedule:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media not in ACCEPTED_TYPES:
        raise UnsupportedFormat(
            f"content type {media!r} is not accepted; send the schedule as one of: "
            + ", ".join(ACCEPTED_TYPES)
        )
    data = load_document(await request.body(), kind="schedule")
    return parse_schedule(data, strict=True, known_job_ids=await _known_job_ids(bus))


def _fires_from_backend(schedule: Schedule) -> bool:
    return schedule.enabled and schedule.runs_on == "backend"


async def _reset_tick(bus: Bus, schedule_id: str) -> None:
    """A schedule that starts firing on the backend (created, enabled, switched to
    ``runs_on: backend``) starts *now*: nothing from before is caught up."""
    await state.put_tick(await bus.kv(subjects.KV_DISPATCH), schedule_id, datetime.now(UTC))


async def _view(
    request: Request,
    services: Services,
    schedules: list[Schedule],
    *,
    decisions: int = 0,
) -> list[dict[str, Any]]:
    bus = services.link.bus()
    now = datetime.now(UTC)
    freeze = await state.read_freeze(bus)
    ids = [s.id for s in schedules]
    stats = await services.db.read(lambda conn: store.stats(conn, ids))
    out: list[dict[str, Any]] = []
    for s in schedules:
        item = schedule_document(s)
        item["status"] = views.schedule_status(
            s,
            stats.get(s.id),
            now=now,
            local_tz=_zone(request),
            freeze=freeze,
            reconcile_poll=_poll(request),
        )
        if decisions:
            rows = await services.db.read(
                functools.partial(store.recent_decisions, schedule_id=s.id, limit=decisions)
            )
            item["decisions"] = [views.decision_view(r) for r in rows]
        out.append(item)
    return out


async def _audit(services: Services, action: str, actor: str, details: dict[str, Any]) -> None:
    await publish_audit(services.link.bus, action, actor, details)


# --- catalog ---------------------------------------------------------------------------------
@router.post("/schedules", status_code=201, openapi_extra=_DOCUMENT_BODY)
async def create_schedule(request: Request, services: ServicesDep) -> JSONResponse:
    """Create a schedule. 201 when stored, 200 when identical to the stored one; 400 lists
    every invalid field (unknown job_id included); 409 when the id holds another schedule."""
    bus = services.link.bus()
    schedule = await _parse_body(request, bus)
    catalog = ScheduleCatalog(bus)
    existing = await catalog.get(schedule.id)
    if existing is None and _fires_from_backend(schedule):
        await _reset_tick(bus, schedule.id)
    created = await catalog.create(schedule)
    if created:
        await _audit(
            services,
            "schedule_create",
            _actor(request),
            {"schedule_id": schedule.id, "job_id": schedule.job_id},
        )
    (item,) = await _view(request, services, [schedule])
    return JSONResponse(item, status_code=201 if created else 200)


@router.post("/schedules/validate", openapi_extra=_DOCUMENT_BODY)
async def validate_schedule(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Validate without storing (400 with every path and reason when invalid)."""
    schedule = await _parse_body(request, services.link.bus())
    return {"ok": True, "id": schedule.id, "schedule": schedule_document(schedule)}


@router.get("/schedules")
async def list_schedules(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Every schedule with its status: next fire, last fire, fired/skipped/missed counts."""
    schedules = await ScheduleCatalog(services.link.bus()).list()
    items = await _view(request, services, schedules)
    return {"items": items, "total": len(items)}


@router.get("/schedules/{schedule_id}")
async def get_schedule(
    schedule_id: str,
    request: Request,
    services: ServicesDep,
    decisions: Annotated[int, Query(ge=0, le=200, description="recent decisions")] = 20,
) -> dict[str, Any]:
    """One schedule, its status and its recent decisions (fired, skipped with the reason —
    deadline 125, freeze, window … — missed, duplicate)."""
    schedule = await ScheduleCatalog(services.link.bus()).require(schedule_id)
    (item,) = await _view(request, services, [schedule], decisions=decisions)
    return item


@router.put("/schedules/{schedule_id}", openapi_extra=_DOCUMENT_BODY)
async def replace_schedule(
    schedule_id: str, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Replace a schedule (the body's id must match). Edits apply from the next tick."""
    bus = services.link.bus()
    schedule = await _parse_body(request, bus)
    if schedule.id != schedule_id:
        raise Invalid.at("id", f"{schedule.id!r} does not match the URL's {schedule_id!r}")
    catalog = ScheduleCatalog(bus)
    current = await catalog.require(schedule_id)
    if _fires_from_backend(schedule) and not _fires_from_backend(current):
        await _reset_tick(bus, schedule_id)
    await catalog.replace(schedule)
    await _audit(
        services,
        "schedule_update",
        _actor(request),
        {"schedule_id": schedule_id, "job_id": schedule.job_id},
    )
    (item,) = await _view(request, services, [schedule])
    return item


@router.delete("/schedules/{schedule_id}")
async def delete_schedule(
    schedule_id: str, request: Request, services: ServicesDep
) -> dict[str, Any]:
    bus = services.link.bus()
    removed = await ScheduleCatalog(bus).delete(schedule_id)
    kv = await bus.kv(subjects.KV_DISPATCH)
    with contextlib.suppress(Exception):  # the tick key may not exist: nothing to clean
        await kv.delete(state.tick_key(schedule_id))
    await _audit(
        services,
        "schedule_delete",
        _actor(request),
        {"schedule_id": schedule_id, "job_id": removed.job_id},
    )
    return {"id": schedule_id, "deleted": True, "job_id": removed.job_id}


@router.post("/schedules/{schedule_id}/enable")
async def enable_schedule(
    schedule_id: str, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Enable: it fires from its next occurrence after now (nothing missed is caught up)."""
    bus = services.link.bus()
    catalog = ScheduleCatalog(bus)
    current = await catalog.require(schedule_id)
    if not current.enabled and current.runs_on == "backend":
        await _reset_tick(bus, schedule_id)
    old, new = await catalog.set_enabled(schedule_id, True)
    await _audit(
        services,
        "schedule_enable",
        _actor(request),
        {"schedule_id": schedule_id, "was_enabled": old.enabled},
    )
    (item,) = await _view(request, services, [new])
    return item


@router.post("/schedules/{schedule_id}/disable")
async def disable_schedule(
    schedule_id: str,
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
    bus = services.link.bus()
    actor = _actor(request)
    old, new = await ScheduleCatalog(bus).set_enabled(schedule_id, False)
    body: dict[str, Any] = {}
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
        exec_ids = await services.db.read(
            lambda conn: store.in_flight_execs_of_schedule(conn, schedule_id)
        )
        for exec_id in exec_ids:
            try:
                killed.append(await services.kills.kill(exec_id, actor=actor))
            except NotFound:
                continue
    await _audit(
        services,
        "schedule_disable",
        actor,
        {
            "schedule_id": schedule_id,
            "was_enabled": old.enabled,
            "cascade": bool(cascade or cascade_kill),
            "cascade_kill": cascade_kill,
            "killed": [k["exec_id"] for k in killed],
        },
    )
    (item,) = await _view(request, services, [new])
    body = {
        **item,
        "revoked": revoked,
        "killed": [{"exec_id": k["exec_id"], "status": k.get("status")} for k in killed],
    }
    return body


@router.get("/schedules/{schedule_id}/preview")
async def preview_schedule(
    schedule_id: str,
    request: Request,
    services: ServicesDep,
    n: Annotated[int, Query(ge=1, le=500, description="how many fire times")] = 10,
) -> dict[str, Any]:
    """The next ``n`` fire times (in the schedule's zone and UTC), gated by active, window,
    skip dates and the freeze; for ``per_pc`` / ``per_target``, every targeted pc with
    ``would_fire`` and why (offline, dispatched and not reported, last success …)."""
    bus = services.link.bus()
    schedule = await ScheduleCatalog(bus).require(schedule_id)
    now = datetime.now(UTC)
    reconcile = schedule.when.shape in ("per_pc", "per_target")

    def facts(conn: Any) -> tuple[Any, Any]:
        agents = reads.list_agents(conn)
        f = store.reconcile_facts(conn, [schedule_id]).get(schedule_id) if reconcile else None
        return agents, f

    agents, f = await services.db.read(facts)
    marks = {}
    if reconcile:
        loaded = await state.load_marks(bus, schedule_id)
        marks = loaded.get(schedule_id, {})
    return views.schedule_preview(
        schedule,
        now=now,
        local_tz=_zone(request),
        n=n,
        freeze=await state.read_freeze(bus),
        agents=agents,
        facts=f,
        marks=marks,
        reconcile_poll=_poll(request),
    )


@router.get("/scheduler")
async def scheduler_status(request: Request) -> dict[str, Any]:
    """This backend's scheduler: whether it holds the lease (leads) and who does."""
    scheduler = _scheduler(request)
    if scheduler is None:
        return {"enabled": False, "leader": False}
    return {"enabled": True, **scheduler.status()}


# --- drift ---------------------------------------------------------------------------------
async def _drift(services: Services, pc_id: str | None = None) -> list[dict[str, Any]]:
    schedules = await ScheduleCatalog(services.link.bus()).list()
    if pc_id is None:
        agents = await services.db.read(reads.list_agents)
    else:
        row = await services.db.read(lambda conn: reads.get_agent(conn, pc_id))
        if row is None:
            raise NotFound(f"agent {pc_id!r} has never sent a heartbeat", pc_id=pc_id)
        agents = [row]
    return views.drift_rows(schedules, agents)


@router.get("/agents/drift")
async def agents_drift(services: ServicesDep) -> dict[str, Any]:
    """Per agent: expected vs applied schedule-set version (``runs_on: agent`` schedules)."""
    items = await _drift(services)
    return {
        "items": items,
        "total": len(items),
        "drifted": sum(1 for i in items if i["drift"]),
    }


@router.get("/agents/{pc_id}/drift")
async def agent_drift(pc_id: str, services: ServicesDep) -> dict[str, Any]:
    (item,) = await _drift(services, pc_id)
    return item
