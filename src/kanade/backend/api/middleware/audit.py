"""The audit guarantee: every successful mutating request leaves an audit record.

A route (or the service below it) that builds its own
:class:`~kanade.backend.messaging.records.AuditRecord` raises the request's audit mark;
after a *successful* (< 400) mutating request whose mark is still down, a generic record
(action = the route's, from :data:`kanade.core.auditactions.ROUTE_ACTIONS`; details = path,
path parameters, status) is published.
Runs inside the auth middleware, so the actor is known and denied requests never get here.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Receive, Scope, Send

from kanade.backend.api.middleware.base import HttpMiddleware
from kanade.backend.api.middleware.status import StatusCapture
from kanade.backend.api.policy import MUTATING_METHODS
from kanade.backend.messaging.audit import generic_details, publish_audit
from kanade.backend.messaging.audit_mark import begin_audit, end_audit
from kanade.core.auditactions import route_action


class AuditMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        capture = StatusCapture(send)
        watch = begin_audit()
        try:
            await self.app(scope, receive, capture)
        finally:
            end_audit(watch)
        method = str(scope["method"]).upper()
        if method in MUTATING_METHODS and capture.succeeded and not watch[0].audited:
            await _generic_audit(scope, method, str(scope["path"]), capture.status or 0)


async def _generic_audit(scope: Scope, method: str, path: str, status: int) -> None:
    services: Any = scope["app"].state.services
    actor = str(scope.get("state", {}).get("actor", "anonymous"))
    route = scope.get("route")
    name = getattr(route, "name", None) or f"{method.lower()}_{path}"
    details = generic_details(path, dict(scope.get("path_params") or {}), status)
    await publish_audit(services.link.bus, route_action(str(name)), actor, details)
