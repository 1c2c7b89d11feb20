"""``/api/freeze``: the fleet-wide freeze of scheduled fires (SPEC §4.5)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.request_context import request_actor
from kanade.backend.api.schemas.freeze import FreezeCleared, FreezeStatus
from kanade.backend.api.schemas.requests import FreezeBody
from kanade.backend.services import freeze

router = APIRouter(prefix="/api", tags=["freeze"])


@router.get("/freeze", response_model=FreezeStatus)
async def freeze_status(services: ServicesDep) -> dict[str, Any]:
    """Whether scheduled fires are frozen now, and the stored freeze window if any."""
    return await freeze.status(services.link.bus)


@router.put("/freeze", response_model=FreezeStatus)
async def freeze_set(body: FreezeBody, request: Request, services: ServicesDep) -> dict[str, Any]:
    """Freeze scheduled fires fleet-wide (manual execs are not gated)."""
    return await freeze.freeze(
        services.link.bus,
        from_=body.from_,
        until=body.until,
        reason=body.reason,
        actor=request_actor(request),
    )


@router.delete("/freeze", response_model=FreezeCleared)
async def freeze_clear(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Lift the freeze (idempotent: clearing an unfrozen fleet is a success)."""
    return await freeze.thaw(services.link.bus, actor=request_actor(request))
