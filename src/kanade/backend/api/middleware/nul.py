"""A NUL character in the query string is a 400 naming the parameter, on every route.

PostgreSQL refuses NUL in text (SQLite stores it), so a query value carrying one reached
the store as a server error on PostgreSQL only (found by schemathesis on
``GET /api/results?exec_id=…%00…``). No kanade name, id or search text contains NUL; one
check here covers every route's query parameters, present and future.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from kanade.backend.api.middleware.base import HttpMiddleware


def nul_parameter(query_string: bytes) -> str | None:
    """The first query parameter whose name or value holds a NUL character, if any."""
    if b"\x00" not in query_string and b"%00" not in query_string:
        return None  # the common case, without parsing
    text = query_string.decode("latin-1")
    for name, value in parse_qsl(text, keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "\\0")
    return None


class NulQueryMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = nul_parameter(scope.get("query_string", b""))
        if name is None:
            await self.app(scope, receive, send)
            return
        body = {
            "error": "invalid request",
            "errors": [{"path": f"query.{name}", "reason": "must not contain NUL characters"}],
        }
        await JSONResponse(body, status_code=400)(scope, receive, send)
