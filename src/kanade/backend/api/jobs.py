"""``/api/jobs``: the job catalog (YAML or JSON in, JSON out)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.params import JobId
from kanade.backend.api.request_context import is_admin, request_actor
from kanade.backend.api.schemas.jobs import JobDocument, JobList
from kanade.backend.catalog.jobs import job_document
from kanade.backend.errors import UnsupportedFormat
from kanade.backend.services.jobs import put_job as store_job
from kanade.core.validation import load_document, parse_job

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

ACCEPTED_TYPES = (
    "application/json",
    "application/yaml",
    "application/x-yaml",
    "text/yaml",
    "text/plain",
)


_DOCUMENT_BODY = {
    "requestBody": {
        "required": True,
        "description": "a job manifest (SPEC §2.1), YAML or JSON",
        "content": {
            t: {"schema": {"type": "object", "description": "JSON Schema: GET /api/schemas/job"}}
            for t in ("application/json", "application/yaml")
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=JobDocument,
    responses={
        200: {"model": JobDocument, "description": "identical to the stored job"},
        403: {"description": "only an admin may remove a job's require_approval"},
    },
    openapi_extra=_DOCUMENT_BODY,
)
async def put_job(request: Request, services: ServicesDep) -> JSONResponse:
    """Create or replace a job. 201 when stored, 200 when identical to the stored one;
    400 lists every invalid field; 409 when the same version exists with other content;
    403 when a non-admin would remove the stored version's ``require_approval``."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media not in ACCEPTED_TYPES:
        raise UnsupportedFormat(
            f"content type {media!r} is not accepted; send the job as one of: "
            + ", ".join(ACCEPTED_TYPES)
        )
    body = await request.body()
    # Off the event loop: a document is up to 2 MiB of YAML (SPEC §8.3).
    job = await asyncio.to_thread(lambda: parse_job(load_document(body, kind="job"), strict=True))
    changed = await store_job(
        services.link.bus, job, actor=request_actor(request), is_admin=is_admin(request)
    )
    return JSONResponse(job_document(job), status_code=201 if changed else 200)


@router.get("", response_model=JobList)
async def list_jobs(services: ServicesDep) -> dict[str, Any]:
    jobs = [job_document(j) for j in await services.catalog().list()]
    return {"items": jobs, "total": len(jobs)}


@router.get("/{job_id}", response_model=JobDocument)
async def get_job(job_id: JobId, services: ServicesDep) -> dict[str, Any]:
    job = await services.catalog().require(job_id)
    return job_document(job)
