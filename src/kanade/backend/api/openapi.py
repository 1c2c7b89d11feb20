"""The OpenAPI document says what the API really answers (issue #15 item 9).

FastAPI documents a request-validation failure as 422 with its own error shape; kanade
answers 400 with ``{"error", "errors": [{path, reason}]}`` (SPEC §4.11,
:mod:`kanade.backend.api.errors`). Every operation gets the error answers the shared
machinery can give — 400 (invalid), 401/403 (unless the role table makes it public), 404,
409, 413 (body over the limit), 503 (broker away) — each with the one error schema, and
and the rarer ones a few operations raise (:data:`SPECIFIC`).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict

from kanade.backend.api.policy import required_role

ERROR_REF: Final = "#/components/schemas/ErrorBody"
_HTTP_METHODS: Final = ("get", "put", "post", "delete", "patch", "head", "options")


class FieldProblem(BaseModel):
    path: str
    reason: str


class ErrorBody(BaseModel):
    """Every error answer: one line for a person, and machine-readable details beside it
    (``errors`` for invalid fields; ``limit_bytes``, ids … where they help)."""

    model_config = ConfigDict(extra="allow")
    error: str
    errors: list[FieldProblem] | None = None


COMMON: Final = {
    "400": "invalid request: each problem as {path, reason}",
    "404": "not found",
    "409": "conflict with the current state",
    "413": "the request body (or a message it would produce) is over a size limit",
    "503": "the broker is not reachable right now; retry",
}
AUTH: Final = {
    "401": "no, an unknown or an expired credential",
    "403": "the caller's role is not allowed to do this",
}


SPECIFIC: Final[dict[tuple[str, str], dict[str, str]]] = {
    ("post", "/api/jobs"): {"415": "the body is neither YAML nor JSON"},
    ("post", "/api/schedules"): {"415": "the body is neither YAML nor JSON"},
    ("put", "/api/schedules/{schedule_id}"): {"415": "the body is neither YAML nor JSON"},
    ("post", "/api/schedules/validate"): {"415": "the body is neither YAML nor JSON"},
    ("post", "/api/enroll"): {
        "401": "the enrolment token is not recognised",
        "410": "the enrolment token was used, expired or cancelled",
    },
    ("post", "/api/auth/login"): {
        "401": "wrong user name or password",
        "429": "too many failed logins for this user or address; retry after Retry-After seconds",
    },
    ("post", "/api/agents/{pc_id}/ping"): {"504": "the agent did not answer in time"},
}


def _error(description: str) -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": ERROR_REF}}}
    return {"description": description, "content": content}


def describe(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite FastAPI's generated document in place (see the module docstring)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    error = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error.pop("$defs", {}))
    components["ErrorBody"] = error
    for path, operations in schema.get("paths", {}).items():
        for method in [m for m in operations if m in _HTTP_METHODS]:
            responses = operations[method].setdefault("responses", {})
            responses.pop("422", None)
            wanted = {**COMMON, **SPECIFIC.get((method, path), {})}
            if required_role(method, path) is not None:
                wanted.update(AUTH)
            for status, description in sorted(wanted.items()):
                responses.setdefault(status, _error(description))
    return schema


def install(app: FastAPI) -> None:
    """Serve :func:`describe`'s document at ``app.openapi_url`` (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    openapi_version=app.openapi_version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
