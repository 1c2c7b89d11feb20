"""The ``audit`` table: who did what, keyed by the KANADE_AUDIT stream sequence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.engine import Connection

from kanade.backend.store.paging import Page, page
from kanade.backend.store.tables import audit
from kanade.backend.store.upsert import insert


def insert_audit(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert once per ``seq``: a redelivered or replayed record writes nothing new."""
    if rows:
        stmt = insert(conn, audit).on_conflict_do_nothing(index_elements=["seq"])
        conn.execute(stmt, list(rows))


def list_audit(
    conn: Connection,
    *,
    actor: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> Page:
    q: Select[Any] = select(audit)
    if actor is not None:
        q = q.where(audit.c.actor == actor)
    if action is not None and action.endswith("."):  # a whole area: "job." → job.*
        q = q.where(audit.c.action.startswith(action, autoescape=True))
    elif action is not None:
        q = q.where(audit.c.action == action)
    if since is not None:
        q = q.where(audit.c.recorded_at >= since)
    if until is not None:
        q = q.where(audit.c.recorded_at < until)
    q = q.order_by(audit.c.seq.desc())
    return page(conn, q, limit, offset)
