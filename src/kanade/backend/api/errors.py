"""Every error leaves the API as JSON ``{"error": "...", ...}`` with the right status.

:data:`STATUS` is the one table from domain error (:mod:`kanade.backend.errors`) to HTTP
status: nothing below the API knows a status code.

Request-validation errors (pydantic, on bodies and query parameters) become 400
with ``errors: [{path, reason}]`` — the same shape as an invalid job document, so
clients render both the same way.
"""

from __future__ import annotations

from typing import Any

import nats.errors
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kanade.backend.errors import (
    Conflict,
    Corrupt,
    DomainError,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    RateLimited,
    TimedOut,
    TooLarge,
    Unauthenticated,
    Unavailable,
    UnsupportedFormat,
)
from kanade.core.validation import DocumentInvalid, format_path

log = structlog.get_logger(__name__)

STATUS: dict[type[DomainError], int] = {
    Invalid: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    TooLarge: 413,
    UnsupportedFormat: 415,
    RateLimited: 429,
    Corrupt: 500,
    Unavailable: 503,
    TimedOut: 504,
}


def status_of(exc: DomainError) -> int:
    """The status of the most specific class in :data:`STATUS` (500 for an unmapped one)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


_LOCATIONS = ("body", "query", "path", "header")
_PREFIXES = ("Value error, ", "Assertion failed, ")


def _reason(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    msg = str(err.get("msg", "invalid"))
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg.replace("Input should be", "must be")


def request_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for err in errors:
        loc = list(err.get("loc", ()))
        where = loc.pop(0) if loc and loc[0] in _LOCATIONS else "body"
        if where == "body" and not loc:
            path = "(body)"
        else:
            path = format_path(loc)
            if where in ("query", "path", "header"):
                path = f"{where}.{path}"
        out.append({"path": path, "reason": _reason(err)})
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
        challenge = isinstance(exc, Unauthenticated)
        headers = {"WWW-Authenticate": 'Bearer realm="kanade"'} if challenge else None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return JSONResponse(exc.body(), status_code=status_of(exc), headers=headers)

    @app.exception_handler(DocumentInvalid)
    async def _invalid_doc(_: Request, exc: DocumentInvalid) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        body = {"error": "invalid request", "errors": request_errors(list(exc.errors()))}
        return JSONResponse(body, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):
            message = f"{message.lower()}: {request.method} {request.url.path}"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(nats.errors.Error)
    async def _broker_error(request: Request, exc: nats.errors.Error) -> JSONResponse:
        # The link was up when the request started but the broker did not answer
        # (restarting, overloaded): a retry later is the right reaction, hence 503.
        log.warning("broker request failed", path=request.url.path, error=repr(exc))
        body = {"error": f"the broker did not answer ({type(exc).__name__}); retry shortly"}
        return JSONResponse(body, status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)
