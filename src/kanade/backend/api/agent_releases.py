"""``/api/agent-releases`` (admin: publish and list signed agent releases) and
``/api/agent-versions`` (the fleet's versions, quarantined agents, targets), SPEC §3.8.

Publishing takes the single-file agent's bytes as the body (``application/octet-stream``);
the version and platform come from inside it. Rolling a version out is a config setting
(``target_version`` in a layer: ``kanade agent rollout``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.request_context import request_actor
from kanade.backend.api.schemas.releases import FleetVersions, Published, ReleaseList

router = APIRouter(prefix="/api", tags=["agent releases"])


@router.post("/agent-releases", response_model=Published)
async def publish_release(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Store a single-file agent (``kanade agent build``) as a signed release."""
    data = await request.body()
    return await services.releases.publish(data, actor=request_actor(request))


@router.get("/agent-releases", response_model=ReleaseList)
async def list_releases(services: ServicesDep) -> dict[str, Any]:
    return {"items": await services.releases.releases()}


@router.get("/agent-versions", response_model=FleetVersions)
async def fleet_versions(services: ServicesDep) -> dict[str, Any]:
    """Versions across the fleet with counts, quarantined agents and the rollout targets."""
    return await services.releases.fleet()
