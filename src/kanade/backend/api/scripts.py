"""``/api/scripts``: script objects, uploaded as raw bytes (SPEC §2.1 ``script_object``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.request_context import request_actor
from kanade.backend.api.schemas.scripts import ScriptObject
from kanade.core.models.job import SCRIPT_NAME_PATTERN, SCRIPT_VERSION_PATTERN

router = APIRouter(prefix="/api/scripts", tags=["scripts"])

Name = Annotated[str, Path(pattern=SCRIPT_NAME_PATTERN, description="the script's name")]
Version = Annotated[str, Path(pattern=SCRIPT_VERSION_PATTERN, description="its version")]

_SCRIPT_BODY = {
    "requestBody": {
        "required": True,
        "description": "the script, as raw bytes (any content type)",
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "text/plain": {"schema": {"type": "string", "minLength": 1}},
        },
    }
}


@router.put(
    "/{name}/{version}",
    status_code=201,
    response_model=ScriptObject,
    responses={200: {"model": ScriptObject, "description": "identical to the stored script"}},
    openapi_extra=_SCRIPT_BODY,
)
async def upload_script(
    name: Name, version: Version, request: Request, services: ServicesDep
) -> JSONResponse:
    """Store a script object; a job runs it with ``execute.script_object: NAME/VERSION``.
    201 when stored, 200 when the same bytes are already stored; 409 when the version
    exists with other content; 413 over the backend's ``--max-script-bytes``."""
    body, created = await services.scripts.upload(
        name, version, await request.body(), actor=request_actor(request)
    )
    return JSONResponse(body, status_code=201 if created else 200)


@router.get("/{name}/{version}", response_model=ScriptObject)
async def get_script(name: Name, version: Version, services: ServicesDep) -> dict[str, Any]:
    """A stored script object's size and sha256 (never its content)."""
    return await services.scripts.info(name, version)
