"""Operator-driven moves of an execution's status (approved, rejected, cancelled by an abort),
allowed only along the transition table of :mod:`kanade.core.execstatus`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from kanade.backend.store.tables import executions
from kanade.core.execstatus import can_transition


def set_exec_status(conn: Connection, exec_id: str, new: str, now: datetime) -> bool:
    """Move an exec to ``new`` if the status table allows it from where it is now."""
    current = conn.execute(
        select(executions.c.status).where(executions.c.exec_id == exec_id)
    ).scalar_one_or_none()
    if current is None or current == new or not can_transition(str(current), new):
        return False
    res = conn.execute(
        update(executions)
        .where(executions.c.exec_id == exec_id, executions.c.status == current)
        .values(status=new, updated_at=now)
    )
    return bool(res.rowcount)
