"""Approvals (SPEC §4.8): approve or reject an exec waiting in ``awaiting_approval``, list
requests, and approve job versions for unattended (scheduled) runs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.params import ExecId, JobId, Version
from kanade.backend.api.request_context import current_actor
from kanade.backend.api.schemas.approvals import (
    Approval,
    ApprovalPage,
    Decided,
    UnattendedCreated,
    UnattendedList,
    UnattendedRevoked,
)

router = APIRouter(prefix="/api", tags=["approvals"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000)


@router.post("/executions/{exec_id}/approve", response_model=Decided)
async def approve_execution(exec_id: ExecId, services: ServicesDep) -> dict[str, Any]:
    """Approve an exec waiting for approval (a different operator than the requester);
    it is published at once (or its rollout starts)."""
    decided = await services.approvals.approve(exec_id, current_actor())
    return decided.to_dict()


@router.post("/executions/{exec_id}/reject", response_model=Decided)
async def reject_execution(
    exec_id: ExecId, services: ServicesDep, body: RejectBody | None = None
) -> dict[str, Any]:
    """Reject an exec waiting for approval; it is never published."""
    reason = body.reason if body is not None else None
    decided = await services.approvals.reject(exec_id, current_actor(), reason)
    return decided.to_dict()


@router.get("/approvals", response_model=ApprovalPage)
async def list_approvals(
    services: ServicesDep,
    state: Literal["pending", "approved", "rejected"] | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Approval requests, newest first (``state=pending``: what waits for a decision)."""
    return await services.approvals.list_approvals(state=state, limit=limit, offset=offset)


@router.get("/approvals/{exec_id}", response_model=Approval)
async def get_approval(exec_id: ExecId, services: ServicesDep) -> dict[str, Any]:
    return await services.approvals.get_approval(exec_id)


@router.post(
    "/jobs/{job_id}/versions/{version}/approve-unattended",
    status_code=201,
    response_model=UnattendedCreated,
)
async def approve_unattended(
    job_id: JobId, version: Version, services: ServicesDep
) -> dict[str, Any]:
    """Let schedules fire this version of a ``require_approval`` job without a person."""
    return await services.approvals.approve_unattended(job_id, version, current_actor())


@router.delete(
    "/jobs/{job_id}/versions/{version}/approve-unattended", response_model=UnattendedRevoked
)
async def revoke_unattended(
    job_id: JobId, version: Version, services: ServicesDep
) -> dict[str, Any]:
    """Withdraw an unattended-run approval: schedules skip the job again."""
    await services.approvals.revoke_unattended(job_id, version, current_actor())
    return {"job_id": job_id, "version": version, "approved": False}


@router.get("/unattended-approvals", response_model=UnattendedList)
async def list_unattended(services: ServicesDep, job_id: str | None = None) -> dict[str, Any]:
    """Job versions approved for unattended runs."""
    items = await services.approvals.list_unattended(job_id)
    return {"items": items, "total": len(items)}
