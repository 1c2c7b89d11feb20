"""The ASGI layer in front of every route: authenticate, authorise, guarantee an audit.

For each HTTP request:

1. the role it needs comes from :func:`kanade.backend.api.policy.required_role`
   (method + path; decided before routing, so every route is covered, including
   ones added later by anyone);
2. the bearer token is resolved to a :class:`Principal` (401 when missing/invalid,
   403 when the role is too low); ``request.state.actor`` / ``.role`` are set, and
   the actor is also put in a context variable for code below the routes;
3. after a *successful* (< 400) mutating request that did not publish its own
   audit record (:func:`~kanade.backend.api.request_context.mark_audited`), a generic
   record is published.

A pure ASGI middleware rather than ``BaseHTTPMiddleware``: it neither buffers nor
re-wraps streaming responses (the dashboard's server-sent events) and keeps the
request in the same task, so context variables set here reach the route.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import structlog
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kanade.backend.api.policy import MUTATING_METHODS, allows, required_role
from kanade.backend.api.request_context import begin_request, end_request
from kanade.backend.messaging.audit import generic_details, publish_audit
from kanade.backend.messaging.live import hub, topics_for
from kanade.backend.services.auth.authenticator import PUBLIC, Principal, Unauthenticated, bearer

log = structlog.get_logger(__name__)

# EventSource (the dashboard's live stream) cannot send headers; this one read-only
# path may carry the token in the query string instead.
QUERY_TOKEN_PATHS = frozenset({"/api/events"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _query_token(scope: Scope) -> str | None:
    qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = qs.get("access_token")
    return values[0] if values else None


class AuthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        services = getattr(scope["app"].state, "services", None)
        if services is None or services.auth is None:
            # Fail closed: without the lifespan's set-up nobody can be authenticated.
            await _deny(scope, receive, send, 503, "the backend is starting; retry shortly")
            return
        method = str(scope["method"]).upper()
        path = str(scope["path"])
        needed = required_role(method, path)

        token = bearer(_header(scope, b"authorization"))
        if token is None and method == "GET" and path in QUERY_TOKEN_PATHS:
            token = _query_token(scope)
        principal: Principal
        try:
            if needed is None:
                principal = await self._optional(services.auth, token)
            else:
                principal = await services.auth.authenticate(token)
        except Unauthenticated as exc:
            await _deny(scope, receive, send, 401, str(exc))
            return
        if needed is not None and not allows(principal.role, needed):
            await _deny(
                scope,
                receive,
                send,
                403,
                f"{method} {path} needs role {needed}; {principal.actor} has "
                f"{principal.role or 'none'}",
            )
            return

        state = scope.setdefault("state", {})
        state["actor"] = principal.actor
        state["role"] = principal.role
        status: list[int] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        ctx = begin_request(principal.actor)
        try:
            await self.app(scope, receive, capture)
        finally:
            mark = ctx[0]
            end_request(ctx)
        if method in MUTATING_METHODS and status and status[0] < 400:
            if not mark.audited:
                await self._generic_audit(services, scope, method, path, principal, status[0])
            for topic in topics_for(path):
                hub.publish(topic)

    @staticmethod
    async def _optional(auth: Any, token: str | None) -> Principal:
        """Public routes: a valid token still names the actor; a bad one is ignored."""
        if token is None or not auth.enabled:
            return PUBLIC if auth.enabled else await auth.authenticate(None)
        try:
            principal: Principal = await auth.authenticate(token)
        except Unauthenticated:
            return PUBLIC
        return principal

    @staticmethod
    async def _generic_audit(
        services: Any, scope: Scope, method: str, path: str, principal: Principal, status: int
    ) -> None:
        route = scope.get("route")
        action = getattr(route, "name", None) or f"{method.lower()}_{path}"
        details = generic_details(method, path, dict(scope.get("path_params") or {}), status)
        await publish_audit(services.link.bus, str(action), principal.actor, details)


async def _deny(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    headers = {"WWW-Authenticate": 'Bearer realm="kanade"'} if status == 401 else None
    log.info("request denied", status=status, method=scope["method"], path=scope["path"])
    response = JSONResponse({"error": message}, status_code=status, headers=headers)
    await response(scope, receive, send)
