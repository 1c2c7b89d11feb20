"""``/api/freeze``: the fleet-wide freeze of scheduled fires (SPEC §4.5)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.schemas.freeze import FreezeCleared, FreezeStatus
from kanade.backend.api.schemas.requests import FreezeBody
from kanade.backend.catalog.freeze import clear_freeze, get_freeze, set_freeze
from kanade.backend.errors import Invalid
from kanade.backend.messaging.audit import publish_audit
from kanade.core.freeze import FleetFreeze, is_frozen

router = APIRouter(prefix="/api", tags=["freeze"])


def _view(freeze: FleetFreeze | None, now: datetime) -> dict[str, Any]:
    return {
        "frozen": is_frozen(freeze, now),
        "freeze": None if freeze is None else freeze.to_dict(),
    }


@router.get("/freeze", response_model=FreezeStatus)
async def freeze_status(services: ServicesDep) -> dict[str, Any]:
    """Whether scheduled fires are frozen now, and the stored freeze window if any."""
    freeze = await get_freeze(services.link.bus())
    return _view(freeze, datetime.now(UTC))


@router.put("/freeze", response_model=FreezeStatus)
async def freeze_set(body: FreezeBody, request: Request, services: ServicesDep) -> dict[str, Any]:
    """Freeze scheduled fires fleet-wide (manual execs are not gated)."""
    now = datetime.now(UTC)
    if body.until is not None and body.until <= now:
        raise Invalid.at("until", "is in the past; a freeze must end in the future")
    actor = str(getattr(request.state, "actor", "anonymous"))
    freeze = FleetFreeze(
        from_=body.from_, until=body.until, by=actor, reason=body.reason, set_at=now
    )
    await set_freeze(services.link.bus(), freeze)
    await publish_audit(services.link.bus, "freeze_set", actor, freeze.to_dict())
    return _view(freeze, now)


@router.delete("/freeze", response_model=FreezeCleared)
async def freeze_clear(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Lift the freeze (idempotent: clearing an unfrozen fleet is a success)."""
    actor = str(getattr(request.state, "actor", "anonymous"))
    cleared = await clear_freeze(services.link.bus())
    if cleared:
        await publish_audit(services.link.bus, "freeze_clear", actor, {})
    return {**_view(None, datetime.now(UTC)), "cleared": cleared}
