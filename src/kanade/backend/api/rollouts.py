"""``/api/rollouts``: durable rollouts (SPEC §4.7) — list, show with per-wave progress,
resume a halted one, abort one. Creation is ``POST /api/exec/{job_id}`` with ``rollout``."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.request_context import current_actor
from kanade.backend.api.schemas.rollouts import (
    Rollout,
    RolloutAborted,
    RolloutPage,
    RolloutResumed,
)
from kanade.backend.errors import NotFound
from kanade.backend.services import rollouts

router = APIRouter(prefix="/api/rollouts", tags=["rollouts"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]
Status = Literal["awaiting_approval", "running", "halted", "aborted", "completed", "rejected"]


class AbortBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000)


def _now() -> datetime:
    return datetime.now(UTC)


def _wake(request: Request) -> None:
    runner = getattr(request.app.state, "rollout_runner", None)
    if runner is not None:
        runner.wake()


async def _audit(
    services: Any, action: str, rollout_id: str, details: dict[str, Any], at: datetime
) -> None:
    try:
        bus = services.link.bus()
    except Exception:
        return
    await rollouts.publish_audit_once(
        bus,
        action,
        current_actor(),
        {"rollout_id": rollout_id, **details},
        f"audit:{action}:{rollout_id}:{at.timestamp()}",
        at,
    )


@router.get("", response_model=RolloutPage)
async def list_rollouts(
    services: ServicesDep,
    status: Status | None = None,
    job_id: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Rollouts, newest first, each with its waves and their progress."""
    now = _now()
    return await services.db.read(
        lambda conn: rollouts.list_rollouts(
            conn, status=status, job_id=job_id, limit=limit, offset=offset, now=now
        )
    )


@router.get("/{rollout_id}", response_model=Rollout)
async def get_rollout(rollout_id: str, services: ServicesDep) -> dict[str, Any]:
    """One rollout (its id is the exec id) with per-wave pcs, state, due time and
    progress (pending / running / succeeded / failed / skipped / missing, failure rate)."""
    now = _now()
    row = await services.db.read(lambda conn: rollouts.get_rollout(conn, rollout_id, now))
    if row is None:
        raise NotFound(f"rollout {rollout_id!r} not found", rollout_id=rollout_id)
    return row


@router.post("/{rollout_id}/resume", response_model=RolloutResumed)
async def resume_rollout(
    rollout_id: str, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Continue a halted rollout: its next wave is sent at once."""
    now = _now()
    idx = await services.db.write(lambda conn: rollouts.resume(conn, rollout_id, now))
    await _audit(services, "rollout_resume", rollout_id, {"next_wave": idx}, now)
    _wake(request)
    return {"rollout_id": rollout_id, "status": "running", "next_wave": idx}


@router.post("/{rollout_id}/abort", response_model=RolloutAborted)
async def abort_rollout(
    rollout_id: str, request: Request, services: ServicesDep, body: AbortBody | None = None
) -> dict[str, Any]:
    """End a running or halted rollout: waves not yet sent are never sent and the exec
    becomes cancelled. Commands already sent keep running (`kanade kill` ends them)."""
    now = _now()
    reason = body.reason if body is not None else None
    out = await services.db.write(lambda conn: rollouts.abort(conn, rollout_id, reason, now))
    details = {
        "cancelled_waves": out.cancelled_waves,
        "in_flight_wave": out.in_flight_wave,
        "reason": reason,
    }
    if out.exec_cancelled:
        with contextlib.suppress(Exception):
            await rollouts.publish_exec_status(
                services.link.bus(), rollout_id, "cancelled", current_actor(), now
            )
    await _audit(services, "rollout_abort", rollout_id, details, now)
    _wake(request)
    return {
        "rollout_id": rollout_id,
        "status": "aborted",
        "exec_cancelled": out.exec_cancelled,
        **details,
    }
