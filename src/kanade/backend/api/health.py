"""``/health`` and ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from kanade import __version__
from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.schemas.health import Health
from kanade.backend.services import fleet_metrics

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    response_model_exclude_unset=True,  # broker_error only when there is one
)
async def health(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Always 200 while the process serves HTTP; ``status`` says whether all is well, and
    which once-per-deployment workers this replica runs (``leads``)."""
    broker = services.link.connected
    db = await services.db.ping()
    services.metrics.broker_connected.set(1 if broker else 0)
    body: dict[str, Any] = {
        "status": "ok" if broker and db else "degraded",
        "broker": broker,
        "db": db,
        "version": __version__,
        # Say it where monitoring looks: an unauthenticated backend must not go unnoticed.
        "auth": services.auth.mode if services.auth is not None else "unknown",
    }
    if not broker and services.link.last_error:
        body["broker_error"] = services.link.last_error
    deciders = getattr(request.app.state, "deciders", None)
    scheduler = getattr(request.app.state, "scheduler", None)
    if deciders is not None:
        body["replica"] = deciders.holder
        body["leads"] = [name for name, worker in (("scheduler", scheduler),
                                                     ("deciders", deciders))
                         if worker is not None and worker.status().get("leader")]  # fmt: skip
    return body


@router.get("/metrics", response_class=Response)
async def metrics(services: ServicesDep) -> Response:
    services.metrics.broker_connected.set(1 if services.link.connected else 0)
    await fleet_metrics.refresh(services)
    return Response(services.metrics.render(), media_type="text/plain; version=0.0.4")
