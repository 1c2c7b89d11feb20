"""The ASGI layer in front of every route: authenticate, then authorise by the role table
(:func:`kanade.backend.api.policy.required_role`), before routing.

Step by step, and why a pure ASGI middleware: docs/backend-auth-audit.md, "The auth
middleware, step by step".
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import structlog
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from kanade.backend.api.middleware.base import HttpMiddleware
from kanade.backend.api.policy import allows, required_role
from kanade.backend.api.request_context import enter_actor, leave_actor
from kanade.backend.services.auth.authenticator import PUBLIC, Principal, Unauthenticated, bearer

log = structlog.get_logger(__name__)

# EventSource (the dashboard's live streams) cannot send headers; these read-only paths
# may carry the token in the query string instead.
QUERY_TOKEN_PATHS = frozenset({"/api/events"})


def _query_token_path(path: str) -> bool:
    """``/api/events`` and an exec's live output, ``/api/executions/<id>/live``."""
    if path in QUERY_TOKEN_PATHS:
        return True
    parts = path.split("/")
    return len(parts) == 5 and parts[1:3] == ["api", "executions"] and parts[4] == "live"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _query_token(scope: Scope) -> str | None:
    qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = qs.get("access_token")
    return values[0] if values else None


class AuthMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = getattr(scope["app"].state, "services", None)
        if services is None or services.auth is None:
            # Fail closed: without the lifespan's set-up nobody can be authenticated.
            await _deny(scope, receive, send, 503, "the backend is starting; retry shortly")
            return
        method = str(scope["method"]).upper()
        path = str(scope["path"])
        needed = required_role(method, path)

        token = bearer(_header(scope, b"authorization"))
        if token is None and method == "GET" and _query_token_path(path):
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
        state["principal"] = principal  # a session's id and end: what logout revokes
        token_ctx = enter_actor(principal.actor)
        try:
            await self.app(scope, receive, send)
        finally:
            leave_actor(token_ctx)

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


async def _deny(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    headers = {"WWW-Authenticate": 'Bearer realm="kanade"'} if status == 401 else None
    log.info("request denied", status=status, method=scope["method"], path=scope["path"])
    response = JSONResponse({"error": message}, status_code=status, headers=headers)
    await response(scope, receive, send)
