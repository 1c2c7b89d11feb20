"""Responses of the approval routes (SPEC §4.8)."""

from __future__ import annotations

from kanade.backend.api.schemas.common import Instant, Schema


class Decided(Schema):
    exec_id: str
    state: str
    rollout: bool
    dispatched: bool


class Approval(Schema):
    exec_id: str
    job_id: str
    version: str
    state: str
    requested_by: str
    requested_at: Instant
    expires_at: Instant
    decided_by: str | None
    decided_at: Instant | None
    reason: str | None
    rollout: bool
    dispatched_at: Instant | None


class ApprovalPage(Schema):
    items: list[Approval]
    total: int
    limit: int
    offset: int


class UnattendedApproval(Schema):
    job_id: str
    version: str
    approved_by: str
    approved_at: Instant


class UnattendedCreated(Schema):
    job_id: str
    version: str
    approved_by: str
    approved_at: Instant
    created: bool


class UnattendedRevoked(Schema):
    job_id: str
    version: str
    approved: bool


class UnattendedList(Schema):
    items: list[UnattendedApproval]
    total: int
