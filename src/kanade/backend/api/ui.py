"""The dashboard (SPEC §6): ``/`` serves the single page, ``/ui/*`` its static files,
``GET /api/events`` the server-sent invalidation events that keep it live, and
``GET /api/dashboard/summary`` the counts behind the overview's charts.

The page is plain HTML + ES modules (no build step). Live updates: writers publish
small events on the in-process :mod:`kanade.backend.messaging.live` hub; each open stream
merges what piled up for ``DEBOUNCE_S`` and sends one event per topic, and the page
refetches what changed through the ordinary API.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from sse_starlette import EventSourceResponse

from kanade import __version__
from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.schemas.dashboard import DashboardSummary
from kanade.backend.errors import NotFound
from kanade.backend.messaging.live import hub
from kanade.backend.services.dashboard import summary
from kanade.core.instants import system_clock

router = APIRouter(tags=["dashboard"])

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

DEBOUNCE_S = 0.25
"""Events arriving within this long are merged into one per topic."""
PING_S = 15
"""Comment pings keep proxies from closing an idle stream."""
RETRY_MS = 2000
"""Tells the browser how soon to reconnect a dropped stream."""

mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/css", ".css")
mimetypes.add_type("image/svg+xml", ".svg")

_NO_CACHE = {"Cache-Control": "no-cache"}


@router.get("/", include_in_schema=False)
async def index() -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers=_NO_CACHE)


@router.get("/ui/{path:path}", include_in_schema=False)
async def static_file(path: str) -> Response:
    target = (STATIC_DIR / path).resolve()
    if not target.is_file() or not target.is_relative_to(STATIC_DIR):
        raise NotFound(f"no dashboard file {path!r}")
    media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    # no-cache = revalidate (ETag/Last-Modified): an upgraded backend is picked up at once.
    return FileResponse(target, media_type=media, headers=_NO_CACHE)


def _event(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"data": json.dumps({"topic": topic, **payload}, separators=(",", ":"))}


@router.get("/api/events", response_class=EventSourceResponse)
async def events(request: Request) -> EventSourceResponse:
    """Server-sent events: ``{"topic": "results"|"execs"|"agents"|…, ids…}`` per change.

    The first event is ``{"topic": "hello", "version": …}``; after a reconnect a
    client should refetch everything it shows (events are not replayed)."""

    async def stream() -> AsyncIterator[dict[str, Any]]:
        with hub.subscribe() as sub:
            yield {**_event("hello", {"version": __version__}), "retry": RETRY_MS}
            while True:
                if not await sub.wait(timeout=5.0):
                    if await request.is_disconnected():
                        return
                    continue
                await asyncio.sleep(DEBOUNCE_S)
                for topic, payload in sub.take():
                    yield _event(topic, payload)

    return EventSourceResponse(
        stream(), ping=PING_S, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


@router.get("/api/dashboard/summary", tags=["dashboard"], response_model=DashboardSummary)
async def dashboard_summary(services: ServicesDep) -> dict[str, Any]:
    """Counts for the overview: agents by liveness, results per hour over the last 24 h
    (ok / failed / skipped / running, by the time the stream recorded them), executions
    of the last 24 h by status."""
    now = system_clock()
    return await services.db.read(lambda conn: summary(conn, now))
