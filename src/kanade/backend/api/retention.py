"""``/api/retention``: what retention keeps and what it last did (SPEC §4.12)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.schemas.retention import RetentionStatus
from kanade.backend.services import retention

router = APIRouter(prefix="/api", tags=["retention"])


@router.get("/retention", response_model=RetentionStatus)
async def retention_status(services: ServicesDep) -> dict[str, Any]:
    """Each table's age and count limits with its oldest row, the last pass, and how far
    the audit trail was pruned. The limits are the backend's ``--retain`` settings."""
    return await retention.status(services.db, services.settings.retention)
