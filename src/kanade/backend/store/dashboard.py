"""The dashboard overview's aggregates: counts, not rows (agents by liveness, results per
hour, executions by status) — fetching 10 000 results to draw 24 bars would make the page
slow exactly when the fleet is large."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, case, cast, func, select
from sqlalchemy.engine import Connection

from kanade.backend.store.tables import agents, executions, results
from kanade.core.fleet import ALIVE_WINDOW, STALE_WINDOW

HOURS = 24


def _hour_bucket(conn: Connection) -> Any:
    col = results.c.recorded_at
    if conn.dialect.name == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)
        return func.substr(cast(col, String), 1, 13)
    return func.to_char(func.timezone("UTC", col), "YYYY-MM-DD HH24")


def summary(conn: Connection, now: datetime) -> dict[str, Any]:
    alive_since, stale_since = now - ALIVE_WINDOW, now - STALE_WINDOW
    seen = agents.c.last_seen
    alive, stale, total = conn.execute(
        select(
            func.count().filter(seen >= alive_since),
            func.count().filter(and_(seen < alive_since, seen >= stale_since)),
            func.count(),
        ).select_from(agents)
    ).one()

    start = (now - timedelta(hours=HOURS - 1)).replace(minute=0, second=0, microsecond=0)
    bucket = _hour_bucket(conn).label("hour")
    kind = case(
        (results.c.state == "in_flight", "running"),
        (results.c.skipped.is_(True), "skipped"),
        (and_(results.c.state == "finished", results.c.exit_code == 0), "ok"),
        else_="failed",
    ).label("kind")
    rows = conn.execute(
        select(bucket, kind, func.count())
        .where(results.c.recorded_at >= start)
        .group_by(bucket, kind)
    ).all()
    by_hour: dict[str, dict[str, int]] = {}
    for hour, k, n in rows:
        by_hour.setdefault(str(hour), {})[k] = int(n)
    hours = []
    for i in range(HOURS):
        t = start + timedelta(hours=i)
        counts = by_hour.get(t.strftime("%Y-%m-%d %H"), {})
        hours.append({"hour": t.isoformat(), **{k: counts.get(k, 0) for k in _KINDS}})

    exec_rows = conn.execute(
        select(executions.c.status, func.count())
        .where(executions.c.created_at >= now - timedelta(hours=HOURS))
        .group_by(executions.c.status)
    ).all()
    with_failures = conn.execute(
        select(func.count())
        .select_from(executions)
        .where(
            executions.c.created_at >= now - timedelta(hours=HOURS),
            executions.c.failed_count > 0,
        )
    ).scalar_one()
    return {
        "now": now.isoformat(),
        "agents": {
            "alive": int(alive),
            "stale": int(stale),
            "offline": int(total) - int(alive) - int(stale),
            "total": int(total),
        },
        "results_by_hour": hours,
        "executions_24h": {
            "by_status": {str(st): int(n) for st, n in exec_rows},
            "total": sum(int(n) for _, n in exec_rows),
            "with_failures": int(with_failures),
        },
    }


_KINDS = ("ok", "failed", "skipped", "running")
