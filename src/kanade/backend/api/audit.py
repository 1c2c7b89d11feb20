"""``/api/audit``: the audit log, newest first (projected from KANADE_AUDIT)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.params import IsoInstant
from kanade.backend.api.schemas.audit import AuditActions, AuditPage
from kanade.backend.store.audit import list_audit
from kanade.core.auditactions import ACTIONS, LEGACY, canonical

router = APIRouter(prefix="/api", tags=["audit"])

Limit = Annotated[int, Query(ge=1, le=1000)]
# Bounded: an offset beyond a 64-bit integer must be a 400, not a database overflow.
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


@router.get("/audit", response_model=AuditPage)
async def audit_log(
    services: ServicesDep,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=128,
            description="an action (GET /api/audit/actions; an old name is accepted), or "
            "a prefix ending in '.' for a whole area, e.g. 'job.'",
        ),
    ] = None,
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
            action=None if action is None else canonical(action),
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
    )
    return page.to_dict()


@router.get("/audit/actions", response_model=AuditActions)
async def audit_actions() -> dict[str, Any]:
    """The action names audit records carry, one per verb."""
    return {
        "items": [{"action": a, "description": d} for a, d in ACTIONS.items()],
        "legacy": dict(LEGACY),
    }
