"""``/api/inventory`` (facts per pc and job, with history) and ``/api/checks`` (compliance)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.params import PcId
from kanade.backend.api.schemas.inventory import CheckPage, InventoryPage, PcInventory
from kanade.backend.store.inventory import inventory_history_of, list_checks, list_inventory
from kanade.core.facts import CheckStatus

router = APIRouter(prefix="/api", tags=["inventory"])

Limit = Annotated[int, Query(ge=1, le=1000)]
# Bounded: an offset beyond a 64-bit integer must be a 400, not a database overflow.
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


@router.get("/inventory", response_model=InventoryPage)
async def inventory(
    services: ServicesDep,
    pc_id: str | None = None,
    job_id: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The latest facts of each (pc, inventory job)."""
    page = await services.db.read(
        lambda conn: list_inventory(conn, pc_id=pc_id, job_id=job_id, limit=limit, offset=offset)
    )
    return page.to_dict()


@router.get("/inventory/{pc_id}", response_model=PcInventory)
async def inventory_of_pc(
    pc_id: PcId,
    services: ServicesDep,
    job_id: str | None = None,
    history_limit: Annotated[int, Query(ge=0, le=1000)] = 20,
    history_offset: Offset = 0,
) -> dict[str, Any]:
    """One pc: its latest facts per job, and the history of reports (newest first).
    An unknown pc has no facts, which is an empty answer rather than a 404."""

    def load(conn: Any) -> dict[str, Any]:
        current = list_inventory(conn, pc_id=pc_id, job_id=job_id, limit=1000, offset=0)
        history = inventory_history_of(
            conn, pc_id, job_id=job_id, limit=max(history_limit, 1), offset=history_offset
        )
        hist = history.to_dict()
        if history_limit == 0:
            hist["items"] = []
        hist["limit"] = history_limit
        return {"pc_id": pc_id, "items": current.items, "total": current.total, "history": hist}

    return await services.db.read(load)


@router.get("/checks", response_model=CheckPage)
async def checks(
    services: ServicesDep,
    status: CheckStatus | None = None,
    pc_id: str | None = None,
    name: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The latest status of every (pc, check)."""
    page = await services.db.read(
        lambda conn: list_checks(
            conn, status=status, pc_id=pc_id, name=name, limit=limit, offset=offset
        )
    )
    return page.to_dict()
