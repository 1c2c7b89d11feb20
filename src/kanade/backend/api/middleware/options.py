"""``OPTIONS`` on any route answers 204 with ``Allow`` (issue #15 item 9), and a 405 names
the allowed methods too (RFC 9110 §15.5.6 requires ``Allow`` on a 405).

The methods come from the router itself, so a route added by anyone is covered. OPTIONS
is answered before authentication: it reveals nothing the public OpenAPI document does
not already say.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from kanade.backend.api.middleware.base import HttpMiddleware

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(scope: Scope) -> list[str]:
    """Every method some route serves at this request's path (empty: no such path). The
    router is asked, method by method: included routers hide their routes' method sets."""
    routes = scope["app"].router.routes
    methods = {
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in routes)
    }
    if methods:
        methods.add("OPTIONS")
    return sorted(methods)


class OptionsMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope["method"]).upper() == "OPTIONS":
            methods = allowed_methods(scope)
            response: Response
            if methods:
                response = Response(status_code=204, headers={"Allow": ", ".join(methods)})
            else:
                response = JSONResponse(
                    {"error": f"not found: OPTIONS {scope['path']}"}, status_code=404
                )
            await response(scope, receive, send)
            return

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                # Every route at this path, not just the first one the router tried.
                MutableHeaders(scope=message)["Allow"] = ", ".join(allowed_methods(scope))
            await send(message)

        await self.app(scope, receive, send_with_allow)
