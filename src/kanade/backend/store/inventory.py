"""Reads behind the inventory and check views (newest first, limit/offset)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.engine import Connection

from kanade.backend.store.reads import Page, _page
from kanade.backend.store.tables import checks, inventory, inventory_history


def list_inventory(
    conn: Connection, *, pc_id: str | None, job_id: str | None, limit: int, offset: int
) -> Page:
    q: Select[Any] = select(inventory)
    if pc_id is not None:
        q = q.where(inventory.c.pc_id == pc_id)
    if job_id is not None:
        q = q.where(inventory.c.job_id == job_id)
    return _page(conn, q.order_by(inventory.c.pc_id, inventory.c.job_id), limit, offset)


def inventory_history_of(
    conn: Connection, pc_id: str, *, job_id: str | None, limit: int, offset: int
) -> Page:
    q: Select[Any] = select(inventory_history).where(inventory_history.c.pc_id == pc_id)
    if job_id is not None:
        q = q.where(inventory_history.c.job_id == job_id)
    q = q.order_by(inventory_history.c.observed_at.desc(), inventory_history.c.result_id.desc())
    return _page(conn, q, limit, offset)


def list_checks(
    conn: Connection,
    *,
    status: str | None,
    pc_id: str | None,
    name: str | None,
    limit: int,
    offset: int,
) -> Page:
    q: Select[Any] = select(checks)
    if status is not None:
        q = q.where(checks.c.status == status)
    if pc_id is not None:
        q = q.where(checks.c.pc_id == pc_id)
    if name is not None:
        q = q.where(checks.c.name == name)
    return _page(conn, q.order_by(checks.c.name, checks.c.pc_id), limit, offset)
