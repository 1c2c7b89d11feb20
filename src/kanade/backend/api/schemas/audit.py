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
