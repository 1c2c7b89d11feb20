"""Responses of ``/api/audit``."""

from __future__ import annotations

from typing import Any

from kanade.backend.api.schemas.common import Instant, Schema


class AuditEntry(Schema):
    seq: int
    action: str
    actor: str
    at: Instant
    details: dict[str, Any]
    recorded_at: Instant


class AuditPage(Schema):
    items: list[AuditEntry]
    total: int
    limit: int
    offset: int


class AuditAction(Schema):
    action: str
    description: str


class AuditActions(Schema):
    """Every audit action name (kanade.core.auditactions), with what it records."""

    items: list[AuditAction]
    legacy: dict[str, str]
    """Names older records had → the name they are shown (and filtered) by now."""
