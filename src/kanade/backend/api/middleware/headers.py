"""Security headers on every response (issue #15 item 9): the dashboard may not be framed
(clickjacking), loads nothing but its own files, sends no referrer, and no response is
content-sniffed into something executable.

The dashboard is plain HTML + ES modules from ``/ui``, with no inline script or style
attribute, so ``'self'`` is all it needs. ``/api/docs`` (Swagger UI) loads its assets from a
CDN and gets no content policy of its own; it keeps the other headers.
"""

from __future__ import annotations

from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from kanade.backend.api.middleware.base import HttpMiddleware

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
ALWAYS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
NO_POLICY_PATHS: Final = frozenset({"/api/docs"})


class SecurityHeadersMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        with_policy = str(scope["path"]) not in NO_POLICY_PATHS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ALWAYS.items():
                    headers.setdefault(name, value)
                if with_policy:
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)
