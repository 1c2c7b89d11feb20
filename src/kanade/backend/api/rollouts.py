"""``/api/rollouts``: durable rollouts (SPEC §4.7) — list, show with per-wave progress,
resume a halted one, abort one. Creation is ``POST /api/exec/{job_id}`` with ``rollout``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.params import RolloutId
from kanade.backend.api.request_context import current_actor
from kanade.backend.api.schemas.rollouts import (
    Rollout,
    RolloutAborted,
    RolloutPage,
    RolloutResumed,
)

router = APIRouter(prefix="/api/rollouts", tags=["rollouts"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]
Status = Literal["awaiting_approval", "running", "halted", "aborted", "completed", "rejected"]


class AbortBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000)


@router.get("", response_model=RolloutPage)
async def list_rollouts(
    services: ServicesDep,
    status: Status | None = None,
    job_id: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Rollouts, newest first, each with its waves and their progress."""
    return await services.rollouts.list_rollouts(
        status=status, job_id=job_id, limit=limit, offset=offset
    )


@router.get("/{rollout_id}", response_model=Rollout)
async def get_rollout(rollout_id: RolloutId, services: ServicesDep) -> dict[str, Any]:
    """One rollout (its id is the exec id) with per-wave pcs, state, due time and
    progress (pending / running / succeeded / failed / skipped / missing, failure rate)."""
    return await services.rollouts.get_rollout(rollout_id)


@router.post("/{rollout_id}/resume", response_model=RolloutResumed)
async def resume_rollout(rollout_id: RolloutId, services: ServicesDep) -> dict[str, Any]:
    """Continue a halted rollout: its next wave is sent at once."""
    return await services.rollouts.resume(rollout_id, current_actor())


@router.post("/{rollout_id}/abort", response_model=RolloutAborted)
async def abort_rollout(
    rollout_id: RolloutId, services: ServicesDep, body: AbortBody | None = None
) -> dict[str, Any]:
    """End a running or halted rollout: waves not yet sent are never sent and the exec
    becomes cancelled. Commands already sent keep running (`kanade kill` ends them)."""
    reason = body.reason if body is not None else None
    return await services.rollouts.abort(rollout_id, current_actor(), reason)
