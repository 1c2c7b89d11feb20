"""The list and detail queries behind the API (newest first, limit/offset)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, String, cast, func, select
from sqlalchemy.engine import Connection

from kanade.backend.store.tables import agents, executions, results
from kanade.core.fleet import ALIVE_WINDOW, STALE_WINDOW

Record = dict[str, Any]


@dataclass(frozen=True)
class Page:
    items: list[Record]
    total: int
    limit: int
    offset: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
        }


def _page(conn: Connection, query: Select[Any], limit: int, offset: int) -> Page:
    total = conn.execute(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = conn.execute(query.limit(limit).offset(offset)).mappings()
    return Page([dict(r) for r in rows], int(total.scalar_one()), limit, offset)


# --- agents --------------------------------------------------------------------------


def alive_agents(conn: Connection, cutoff: datetime) -> list[tuple[str, list[str]]]:
    """``(pc_id, groups)`` of every agent heard from at or after ``cutoff``."""
    q = select(agents.c.pc_id, agents.c.groups).where(agents.c.last_seen >= cutoff)
    return [(pc_id, list(groups or [])) for pc_id, groups in conn.execute(q)]


def list_agents(conn: Connection) -> list[Record]:
    return [dict(r) for r in conn.execute(select(agents).order_by(agents.c.pc_id)).mappings()]


def page_agents(
    conn: Connection,
    *,
    now: datetime,
    status: str | None = None,
    group: str | None = None,
    os_family: str | None = None,
    version: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Page:
    """Agents filtered in SQL (liveness from ``last_seen`` against ``now``), by pc_id."""
    q = select(agents)
    if status == "alive":
        q = q.where(agents.c.last_seen >= now - ALIVE_WINDOW)
    elif status == "stale":
        q = q.where(
            agents.c.last_seen < now - ALIVE_WINDOW, agents.c.last_seen >= now - STALE_WINDOW
        )
    elif status == "offline":
        q = q.where(agents.c.last_seen < now - STALE_WINDOW)
    if group is not None:
        # groups is a JSON list of slugs: match the quoted element in its text form
        # (portable across SQLite and PostgreSQL, no JSON operators needed).
        needle = json.dumps(group).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(cast(agents.c.groups, String).like(f"%{needle}%", escape="\\"))
    if os_family is not None:
        q = q.where(agents.c.os_family == os_family)
    if version is not None:
        q = q.where(agents.c.agent_version == version)
    return _page(conn, q.order_by(agents.c.pc_id), limit, offset)


def get_agent(conn: Connection, pc_id: str) -> Record | None:
    row = conn.execute(select(agents).where(agents.c.pc_id == pc_id)).mappings().first()
    return None if row is None else dict(row)


# --- executions ----------------------------------------------------------------------


def list_executions(
    conn: Connection,
    *,
    job_id: str | None,
    status: str | None,
    limit: int,
    offset: int,
    initiated_by: str | None = None,
    since: datetime | None = None,
) -> Page:
    # expected_pcs can hold thousands of names per exec: the list leaves it out
    # (expected_count says how many); the detail view has it.
    q = select(*[c for c in executions.c if c.name != "expected_pcs"])
    if job_id is not None:
        q = q.where(executions.c.job_id == job_id)
    if status is not None:
        q = q.where(executions.c.status == status)
    if initiated_by is not None:
        q = q.where(executions.c.initiated_by == initiated_by)
    if since is not None:
        q = q.where(executions.c.created_at >= since)
    q = q.order_by(executions.c.created_at.desc(), executions.c.exec_id.desc())
    return _page(conn, q, limit, offset)


def get_execution(conn: Connection, exec_id: str) -> Record | None:
    row = conn.execute(select(executions).where(executions.c.exec_id == exec_id)).mappings()
    first = row.first()
    return None if first is None else dict(first)


# --- results -------------------------------------------------------------------------


def results_of_exec(conn: Connection, exec_id: str) -> list[Record]:
    q = select(results).where(results.c.exec_id == exec_id).order_by(results.c.pc_id)
    return [dict(r) for r in conn.execute(q).mappings()]


def list_results(
    conn: Connection,
    *,
    exec_id: str | None,
    pc_id: str | None,
    job_id: str | None,
    limit: int,
    offset: int,
    exit_code: int | None = None,
    state: str | None = None,
) -> Page:
    q = select(results)
    if exec_id is not None:
        q = q.where(results.c.exec_id == exec_id)
    if pc_id is not None:
        q = q.where(results.c.pc_id == pc_id)
    if job_id is not None:
        q = q.where(results.c.job_id == job_id)
    if exit_code is not None:
        q = q.where(results.c.exit_code == exit_code)
    if state == "skipped":  # a flag on finished rows, shown as a state in the views
        q = q.where(results.c.skipped.is_(True))
    elif state is not None:
        q = q.where(results.c.state == state)
    q = q.order_by(results.c.recorded_at.desc(), results.c.result_id.desc())
    return _page(conn, q, limit, offset)


def get_result(conn: Connection, result_id: str) -> Record | None:
    row = conn.execute(select(results).where(results.c.result_id == result_id)).mappings()
    first = row.first()
    return None if first is None else dict(first)
