"""The ``agents`` table: latest heartbeat per pc, and liveness in SQL.

Liveness (alive / stale / offline) is :func:`kanade.core.fleet.agent_status` in Python;
:func:`liveness_is` is its only SQL form, built from the same windows, and everything
that filters or counts agents by liveness goes through it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, String, case, cast, func, select
from sqlalchemy.engine import Connection

from kanade.backend.store.paging import Page, Record, page
from kanade.backend.store.tables import agents
from kanade.backend.store.upsert import insert
from kanade.core.fleet import ALIVE_WINDOW, STALE_WINDOW, AgentStatus

LIVENESS: tuple[AgentStatus, ...] = ("alive", "stale", "offline")


def liveness_is(status: AgentStatus, now: datetime) -> ColumnElement[bool]:
    """``agent_status(last_seen, now, stopped=...) == status`` as a SQL condition
    (index-friendly): an agent that said it was stopping is offline at once."""
    seen = agents.c.last_seen
    running = agents.c.stopped_at.is_(None)
    if status == "alive":
        return (seen >= now - ALIVE_WINDOW) & running
    if status == "stale":
        return (seen < now - ALIVE_WINDOW) & (seen >= now - STALE_WINDOW) & running
    return (seen < now - STALE_WINDOW) | agents.c.stopped_at.is_not(None)


def liveness(now: datetime) -> ColumnElement[str]:
    """Each agent's liveness at ``now`` as a SQL expression (for GROUP BY)."""
    return case(
        (liveness_is("alive", now), "alive"),
        (liveness_is("stale", now), "stale"),
        else_="offline",
    )


def count_by_liveness(conn: Connection, now: datetime) -> dict[str, int]:
    """``{"alive": n, "stale": n, "offline": n}`` (every key present)."""
    status = liveness(now)
    found = {str(s): int(n) for s, n in conn.execute(select(status, func.count()).group_by(status))}
    return {s: found.get(s, 0) for s in LIVENESS}


def disk_trouble(conn: Connection, now: datetime) -> tuple[int, int]:
    """Among alive agents: how many report a full disk, and how many messages they hold
    in memory for it (an offline agent's last word is not news)."""
    q = select(
        func.count().filter(agents.c.disk_full.is_(True)),
        func.coalesce(func.sum(agents.c.held_messages), 0),
    ).where(liveness_is("alive", now))
    full, held = conn.execute(q).one()
    return int(full or 0), int(held or 0)


def alive_agents(conn: Connection, now: datetime) -> list[tuple[str, list[str]]]:
    """``(pc_id, groups)`` of every agent alive at ``now``."""
    q = select(agents.c.pc_id, agents.c.groups).where(liveness_is("alive", now))
    return [(pc_id, list(groups or [])) for pc_id, groups in conn.execute(q)]


def list_agents(conn: Connection) -> list[Record]:
    return [dict(r) for r in conn.execute(select(agents).order_by(agents.c.pc_id)).mappings()]


def existing(conn: Connection, pc_ids: Iterable[str]) -> set[str]:
    """Those of ``pc_ids`` that ever reported (one indexed query)."""
    wanted = sorted(set(pc_ids))
    if not wanted:
        return set()
    q = select(agents.c.pc_id).where(agents.c.pc_id.in_(wanted))
    return {str(r) for r in conn.execute(q).scalars()}


def reported_groups(conn: Connection) -> set[str]:
    """Every group some agent reports in its heartbeats."""
    out: set[str] = set()
    for gs in conn.execute(select(agents.c.groups)).scalars():
        out.update(str(g) for g in gs or [])
    return out


def names(conn: Connection) -> tuple[set[str], set[str]]:
    """Every pc that ever reported, and every group one of them reports (typo checks)."""
    pcs: set[str] = set()
    groups: set[str] = set()
    for pc_id, gs in conn.execute(select(agents.c.pc_id, agents.c.groups)):
        pcs.add(str(pc_id))
        groups.update(str(g) for g in gs or [])
    return pcs, groups


def page_agents(
    conn: Connection,
    *,
    now: datetime,
    status: AgentStatus | None = None,
    group: str | None = None,
    os_family: str | None = None,
    version: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Page:
    """Agents filtered in SQL (liveness from ``last_seen`` against ``now``), by pc_id."""
    q = select(agents)
    if status is not None:
        q = q.where(liveness_is(status, now))
    if group is not None:
        # groups is a JSON list of slugs: match the quoted element in its text form
        # (portable across SQLite and PostgreSQL, no JSON operators needed).
        needle = json.dumps(group).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(cast(agents.c.groups, String).like(f"%{needle}%", escape="\\"))
    if os_family is not None:
        q = q.where(agents.c.os_family == os_family)
    if version is not None:
        q = q.where(agents.c.agent_version == version)
    return page(conn, q.order_by(agents.c.pc_id), limit, offset)


def get_agent(conn: Connection, pc_id: str) -> Record | None:
    row = conn.execute(select(agents).where(agents.c.pc_id == pc_id)).mappings().first()
    return None if row is None else dict(row)


_AGENT_UPDATE_COLUMNS = (
    "hostname", "agent_version", "os_family", "os_version", "boot_time", "cpu_percent",
    "rss_bytes", "groups", "schedule_set_version", "last_command_at", "queue_length",
    "running", "agent_update", "disk_full", "disk_error", "disk_free_bytes", "held_messages",
    "last_seen", "stopped_at", "local_config", "static_groups",
)  # fmt: skip


def upsert_agents(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Latest heartbeat per agent; ``first_seen`` is kept from the first insert. A row
    older than the stored one changes nothing: backend replicas share the heartbeats and
    flush them independently (one whose database was away flushes late), so an older
    heartbeat can arrive after a newer one."""
    if not rows:
        return
    stmt = insert(conn, agents)
    stmt = stmt.on_conflict_do_update(
        index_elements=["pc_id"],
        set_={c: stmt.excluded[c] for c in _AGENT_UPDATE_COLUMNS},
        where=agents.c.last_seen <= stmt.excluded.last_seen,
    )
    conn.execute(stmt, list(rows))
