"""Responses of ``/api/rollouts``."""

from __future__ import annotations

from typing import Any

from kanade.backend.api.schemas.common import Instant, Schema


class WaveProgress(Schema):
    size: int
    pending: int
    running: int
    succeeded: int
    failed: int
    skipped: int
    missing: int
    finished: int
    failure_rate: float
    settled: bool


class Wave(Schema):
    kind: str
    label: str
    pcs: list[str]
    delay_s: float
    state: str
    due_at: Instant | None
    request_id: str
    claimed_at: Instant | None
    dispatched_at: Instant | None
    settled_at: Instant | None
    succeeded: int | None
    failed: int | None
    skipped: int | None
    missing: int | None
    failure_rate: float | None
    verdict: str | None
    index: int
    size: int
    progress: WaveProgress | None
    """Live counts once the wave is sent; null before."""


class Rollout(Schema):
    rollout_id: str
    exec_id: str
    job_id: str
    version: str
    status: str
    halt_on_failure_rate: float | None
    current_wave: int
    wave_count: int
    spec: dict[str, Any]
    """The requested waves, as written."""
    created_by: str
    created_at: Instant
    updated_at: Instant
    finished_at: Instant | None
    reason: str | None
    waves: list[Wave]
    sent_pcs: int
    total_pcs: int


class RolloutPage(Schema):
    items: list[Rollout]
    total: int
    limit: int
    offset: int


class RolloutResumed(Schema):
    rollout_id: str
    status: str
    next_wave: int


class RolloutAborted(Schema):
    rollout_id: str
    status: str
    exec_cancelled: bool
    cancelled_waves: list[int]
    in_flight_wave: int | None
    reason: str | None
