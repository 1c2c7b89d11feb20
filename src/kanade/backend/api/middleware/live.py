"""Live invalidation: a successful mutating request tells the dashboard what changed.

After a *successful* (< 400) POST/PUT/PATCH/DELETE, the topics its path invalidates
(:func:`kanade.backend.messaging.live.topics_for`) are published on the in-process hub
that feeds ``GET /api/events``; open dashboards refetch those views.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from kanade.backend.api.middleware.base import HttpMiddleware
from kanade.backend.api.middleware.status import StatusCapture
from kanade.backend.api.policy import MUTATING_METHODS
from kanade.backend.messaging.live import hub, topics_for


class LiveMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope["method"]).upper() not in MUTATING_METHODS:
            await self.app(scope, receive, send)
            return
        capture = StatusCapture(send)
        await self.app(scope, receive, capture)
        if capture.succeeded:
            for topic in topics_for(str(scope["path"])):
                hub.publish(topic)
