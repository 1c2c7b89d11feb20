"""Request bodies are bounded (SPEC §8.3, issue #15): a body over the limit is answered 413
before it is read — at once when ``Content-Length`` says so, else as soon as the bytes
received pass the limit — so no request, authenticated or not, can make the backend hold
more than the limit in memory.

Outermost of the middlewares: a 400 MB body to the public login route must cost nothing.
The script upload route has its own, larger limit (scripts too big for a command go there),
and so has publishing an agent release (an artefact of several MB: the single-file agent is
6.6 MB).
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from kanade.backend.api.middleware.base import HttpMiddleware
from kanade.backend.errors import TooLarge

SCRIPTS_PREFIX = "/api/scripts/"
RELEASES_PATH = "/api/agent-releases"


def too_large(limit: int, option: str, size: int | None = None) -> TooLarge:
    what = "the request body" if size is None else f"the request body ({size} bytes)"
    advice = (
        "send a smaller one"
        if option in ("--max-script-bytes", "--max-release-bytes")
        else "send a smaller one; a script that big belongs in a script object "
        "(PUT /api/scripts/NAME/VERSION, limit --max-script-bytes)"
    )
    return TooLarge(
        f"{what} is over the limit of {limit} bytes ({option}); {advice}",
        limit_bytes=limit,
    )


class BodyLimitMiddleware(HttpMiddleware):
    def __init__(
        self,
        app: object,
        *,
        max_body_bytes: int,
        max_script_bytes: int,
        max_release_bytes: int,
    ) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.max_body_bytes = max_body_bytes
        self.max_script_bytes = max_script_bytes
        self.max_release_bytes = max_release_bytes

    def _limit(self, path: str) -> tuple[int, str]:
        if path.startswith(SCRIPTS_PREFIX):
            return self.max_script_bytes, "--max-script-bytes"
        if path.rstrip("/") == RELEASES_PATH:
            return self.max_release_bytes, "--max-release-bytes"
        return self.max_body_bytes, "--max-body-bytes"

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit, option = self._limit(str(scope["path"]))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            exc = too_large(limit, option, declared)
            await JSONResponse(exc.body(), status_code=413, headers={"Connection": "close"})(
                scope, receive, send
            )
            return
        received = 0
        refusal: TooLarge | None = None

        async def bounded() -> Message:
            nonlocal received, refusal
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refusal = too_large(limit, option)
                    raise refusal
            return message

        async def send_refusal_instead(message: Message) -> None:
            # Whoever read the body may have turned the error into an answer of its own
            # (FastAPI: "error parsing the body", 400): the answer is 413 all the same.
            if refusal is None:
                await send(message)
            elif message["type"] == "http.response.start":
                await JSONResponse(refusal.body(), status_code=413)(scope, receive, send)

        await self.app(scope, bounded, send_refusal_instead)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None
