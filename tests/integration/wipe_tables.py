"""The rows a wiped database must get back (SPEC §1.3), read from the database (either dialect).

:func:`dump` reads every table of interest in a stable order, leaving out only what is
the database's own bookkeeping: ``executions.updated_at`` (when this database last wrote
the row; ``ended_at`` is compared by presence) and the surrogate ``id`` of
``schedule_decisions`` (the log is compared in order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select

from kanade.backend.store import tables as t
from pgdb import wipe_store

NAMES = (
    "users",
    "approvals",
    "unattended_approvals",
    "rollouts",
    "rollout_waves",
    "schedule_stats",
    "schedule_decisions",
    "executions",
    "exec_decisions",
    "results",
    "agent_schedule_decisions",
    "agent_schedule_stats",
    "enrolled_agents",
    "enroll_tokens",
    "webhooks",
)
# (A schema without some of them — an older tree — compares the ones it has.)
TABLES = tuple(getattr(t, n) for n in NAMES if hasattr(t, n))
VOLATILE = {"executions": {"updated_at"}, "schedule_decisions": {"id"}}
# Compared by presence only: ``executions.ended_at`` is when the reaper found the exec had
# ended (its own pass, on its own clock); that it has ended is the fact that must come back.
PRESENCE = {"executions": {"ended_at"}}


def _url(db: Path | str) -> str:
    # A stack's database is a URL (SQLite or PostgreSQL, tests/pgdb.py); a bare path is SQLite.
    return db if isinstance(db, str) and "://" in db else f"sqlite:///{db}"


def dump(db: Path | str) -> dict[str, list[dict[str, Any]]]:
    engine = create_engine(_url(db))
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        with engine.connect() as conn:
            for table in TABLES:
                order = [*table.primary_key.columns] or list(table.c)
                skip = VOLATILE.get(table.name, set())
                present = PRESENCE.get(table.name, set())
                rows = conn.execute(select(table).order_by(*order)).mappings()
                out[table.name] = [
                    {k: (v is not None if k in present else v) for k, v in r.items()
                     if k not in skip}
                    for r in rows
                ]
    finally:
        engine.dispose()
    return out


def wipe(db: Path | str) -> None:
    """Lose the database as an operator would: SQLite's file and its WAL/SHM removed, or a
    PostgreSQL database's tables dropped."""
    wipe_store(_url(db))


def differences(before: dict[str, list[dict[str, Any]]],
                after: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Human-readable differences, table by table (empty: equal)."""
    out: list[str] = []
    for name in before:
        b, a = before[name], after.get(name, [])
        if b != a:
            out.append(f"{name}: before {len(b)} row(s), after {len(a)}")
            for x, y in zip(b, a, strict=False):
                if x != y:
                    keys = sorted(k for k in x.keys() | y.keys() if x.get(k) != y.get(k))
                    out.append(f"  first difference: {[(k, x.get(k), y.get(k)) for k in keys]}")
                    break
    return out
