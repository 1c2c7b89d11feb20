"""Responses of ``/api/schedules``, ``/api/scheduler`` and schedule-set drift."""

from __future__ import annotations

from typing import Any

from kanade.backend.api.schemas.common import OpenSchema, Schema


class ScheduleStatus(Schema):
    """What the scheduler knows of one schedule (instants as ISO strings, ``Z``)."""

    enabled: bool
    shape: str
    runs_on: str
    tz: str
    frozen: bool
    next_fire: str | None
    next_fire_local: str | None
    next_fire_note: str | None = None
    """Why there is no next fire or what it waits for (``disabled``; reconcile shapes:
    ``done: every targeted pc succeeded once`` …)."""
    last_fire: str | None
    last_nominal: str | None
    last_exec_id: str | None
    fired_count: int
    skipped_count: int
    missed_count: int
    job_revoked: bool = False
    """The job is revoked: every fire is skipped by the agents (126) until it is unrevoked
    (``disable --cascade`` revokes it; ``enable`` does not lift that)."""


class Decision(Schema):
    """One scheduler decision: fired, skipped (with the reason), missed, duplicate — the
    central scheduler's, or (``pc_id`` set) an agent's local scheduler's."""

    decided_at: str | None
    nominal_time: str | None
    occurrence_id: str | None
    result: str | None
    reason: str | None
    detail: str | None
    exec_id: str | None
    pcs: int | None
    lateness_s: float | None
    pc_id: str | None = None


class ScheduleView(OpenSchema):
    """A schedule as stored (SPEC §2.2; full JSON Schema: ``GET /api/schemas/schedule``)
    with its ``status`` and, on ``GET /api/schedules/{id}``, its recent ``decisions``.
    Open: every schedule field is passed through as written."""

    id: str
    job_id: str
    status: ScheduleStatus
    decisions: list[Decision] | None = None
    """Only on the single-schedule read."""


class ScheduleList(Schema):
    items: list[ScheduleView]
    total: int


class ScheduleValidated(Schema):
    ok: bool
    id: str
    schedule: dict[str, Any]
    """The schedule in its canonical form."""


class ScheduleDeleted(Schema):
    id: str
    deleted: bool
    job_id: str


class KilledExec(Schema):
    exec_id: str
    status: str | None


class ScheduleDisabled(ScheduleView):
    """The disabled schedule, and what a cascade revoked and killed."""

    revoked: dict[str, Any] | None
    """The job's revocation (``POST /api/jobs/{id}/revoke``'s answer) with a cascade."""
    killed: list[KilledExec]


class PreviewFire(Schema):
    utc: str
    local: str
    disabled: bool = False
    """The schedule is disabled: it fires at this time only once enabled."""


class PreviewPc(OpenSchema):
    """A targeted pc of a reconcile schedule: would a poll now fire it, and why."""

    pc_id: str
    alive: bool
    last_success: str | None
    dispatched_until: str | None


class SchedulePreview(Schema):
    schedule_id: str
    tz: str
    fires: list[PreviewFire]
    pcs: list[PreviewPc]
    gate: str | None
    warnings: list[str]
    frozen: bool
    shape: str
    runs_on: str
    enabled: bool
    now: str | None
    target_pcs: list[str] | None = None
    """``per_fire`` shapes only."""
    target_alive: list[str] | None = None
    """``per_fire`` shapes only."""
    next_fire: str | None = None
    """Reconcile shapes (enabled): the poll at which a pc is really due next."""
    next_fire_note: str | None = None
    """Reconcile shapes: why there is no next fire, or what it waits for."""


class SchedulerStatus(Schema):
    enabled: bool
    leader: bool
    holder: str | None = None
    other_holder: str | None = None
    schedules: int | None = None
    reconcile_poll_s: float | None = None
    local_tz: str | None = None
    prepare_ahead_s: float | None = None


class Drift(Schema):
    pc_id: str
    groups: list[str]
    expected_version: str
    applied_version: str | None
    drift: bool
    expected_schedules: list[str]


class DriftList(Schema):
    items: list[Drift]
    total: int
    drifted: int
