"""What retention keeps and what it last did (``GET /api/retention``, ``kanade retention``):
the effective limits of each table with the oldest row it still holds, the last pass, and
how far the audit trail was pruned (docs/retention.md)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from kanade.backend.store import retention as store
from kanade.backend.store.database import Database
from kanade.core.retention import TABLES, Policy


async def status(db: Database, policy: Policy) -> dict[str, Any]:
    def load(conn: Connection) -> dict[str, Any]:
        oldest = store.oldest(conn)
        return {
            "interval": policy.describe()["interval"],
            "batch": policy.batch,
            "tables": {
                t: {**policy.limit(t).describe(), "oldest": oldest.get(t)} for t in TABLES
            },
            "last_run": store.last_run(conn),
            "audit_pruned_through": store.audit_pruned_through(conn),
        }

    return await db.read(load)
