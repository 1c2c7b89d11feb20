"""Inventory facts and check statuses: ``inventory`` (newest report per pc and job),
``inventory_history`` (every report) and ``checks`` (newest status per pc and check).

"Newest" is by ``observed_at`` (the agent's ``finished_at``), ties broken by
``result_id``; only a strictly newer report replaces a stored one, so the rows do not
depend on arrival order (see :mod:`kanade.backend.workers.projection.facts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, Table, and_, or_, select
from sqlalchemy.engine import Connection

from kanade.backend.store.paging import Page, page
from kanade.backend.store.tables import checks, inventory, inventory_history
from kanade.backend.store.upsert import insert


def list_inventory(
    conn: Connection, *, pc_id: str | None, job_id: str | None, limit: int, offset: int
) -> Page:
    q: Select[Any] = select(inventory)
    if pc_id is not None:
        q = q.where(inventory.c.pc_id == pc_id)
    if job_id is not None:
        q = q.where(inventory.c.job_id == job_id)
    return page(conn, q.order_by(inventory.c.pc_id, inventory.c.job_id), limit, offset)


def inventory_history_of(
    conn: Connection, pc_id: str, *, job_id: str | None, limit: int, offset: int
) -> Page:
    q: Select[Any] = select(inventory_history).where(inventory_history.c.pc_id == pc_id)
    if job_id is not None:
        q = q.where(inventory_history.c.job_id == job_id)
    q = q.order_by(inventory_history.c.observed_at.desc(), inventory_history.c.result_id.desc())
    return page(conn, q, limit, offset)


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
    return page(conn, q.order_by(checks.c.name, checks.c.pc_id), limit, offset)


# --- writes ----------------------------------------------------------------------------


def _upsert_if_newer(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    stmt = insert(conn, table)
    newer = or_(
        table.c.observed_at < stmt.excluded.observed_at,
        and_(
            table.c.observed_at == stmt.excluded.observed_at,
            table.c.result_id < stmt.excluded.result_id,
        ),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=keys,
        set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys},
        where=newer,
    )
    conn.execute(stmt, list(rows))


def insert_history(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Every accepted report, once per ``result_id``."""
    if rows:
        stmt = insert(conn, inventory_history).on_conflict_do_nothing(index_elements=["result_id"])
        conn.execute(stmt, list(rows))


def upsert_current_facts(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """The newest report per (pc, job), replacing only an older one."""
    _upsert_if_newer(conn, inventory, rows)


def upsert_check_statuses(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """The newest status per (pc, check name), replacing only an older one."""
    _upsert_if_newer(conn, checks, rows)
