"""The dashboard overview's counts: agents by liveness, results per hour over the last
24 h (ok / failed / skipped / running), executions of the last 24 h by status."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from kanade.backend.store import agents, executions, results

# The overview's charts need counts, not rows: fetching 10 000 results to draw 24 bars
# would make the page slow exactly when the fleet is large.

HOURS = 24


def summary(conn: Connection, now: datetime) -> dict[str, Any]:
    fleet = agents.count_by_liveness(conn, now)

    start = (now - timedelta(hours=HOURS - 1)).replace(minute=0, second=0, microsecond=0)
    by_hour = results.count_by_hour(conn, start)
    hours = []
    for i in range(HOURS):
        t = start + timedelta(hours=i)
        counts = by_hour.get(t.strftime("%Y-%m-%d %H"), {})
        hours.append({"hour": t.isoformat(), **{k: counts.get(k, 0) for k in _KINDS}})

    since = now - timedelta(hours=HOURS)
    by_status = executions.count_by_status(conn, since=since)
    with_failures = executions.count_with_failures(conn, since=since)
    return {
        "now": now.isoformat(),
        "agents": {**fleet, "total": sum(fleet.values())},
        "results_by_hour": hours,
        "executions_24h": {
            "by_status": by_status,
            "total": sum(by_status.values()),
            "with_failures": with_failures,
        },
    }


_KINDS = ("ok", "failed", "skipped", "running")
