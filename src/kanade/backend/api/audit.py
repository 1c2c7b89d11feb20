"""``/api/audit``: the audit log, newest first (projected from KANADE_AUDIT)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.params import IsoInstant
from kanade.backend.api.schemas.audit import AuditPage
from kanade.backend.store.audit import list_audit

router = APIRouter(prefix="/api", tags=["audit"])

Limit = Annotated[int, Query(ge=1, le=1000)]
# Bounded: an offset beyond a 64-bit integer must be a 400, not a database overflow.
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


@router.get("/audit", response_model=AuditPage)
async def audit_log(
    services: ServicesDep,
    actor: str | None = None,
    action: str | None = None,
    since: Annotated[
        IsoInstant | None, Query(description="recorded at or after (ISO 8601)")
    ] = None,
    until: Annotated[IsoInstant | None, Query(description="recorded before (ISO 8601)")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    page = await services.db.read(
        lambda conn: list_audit(
            conn,
            actor=actor,
            action=action,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
    )
    return page.to_dict()
