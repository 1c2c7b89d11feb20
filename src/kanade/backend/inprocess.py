"""Run the backend app inside the current event loop (tests, benchmarks).

The lifespan is entered directly and HTTP goes through httpx's ASGI transport,
so no port or subprocess is involved; everything else (migrations, broker link,
projectors, heartbeats) is the real thing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from kanade.backend.app import create_app
from kanade.backend.services.container import Services
from kanade.backend.settings import Settings


@dataclass
class InProcessBackend:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services


@contextlib.asynccontextmanager
async def in_process_backend(
    settings: Settings, *, wait_for_broker: float | None = 30.0
) -> AsyncIterator[InProcessBackend]:
    """Start the app; with ``wait_for_broker``, return only once the broker link is ready."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kanade.test") as client:
            backend = InProcessBackend(app, client)
            if wait_for_broker is not None:
                await backend.services.link.wait_ready(wait_for_broker)
            yield backend
