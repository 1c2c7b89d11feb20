"""Agents' local schedule decisions (``agent_schedule_decisions``, ``agent_schedule_stats``;
SPEC §3.6, §4.4): projected from KANADE_DECISIONS, idempotently and in any order.

A report is a row keyed by its decision id (a redelivery inserts nothing) and moves its
pc's counters to the totals it carries, never back (``max``): counters are the newest totals
of each pc and epoch, however many reports were lost, replayed or pruned (by retention:
:mod:`kanade.backend.store.retention`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from kanade.backend.store.tables import agent_schedule_decisions as decisions
from kanade.backend.store.tables import agent_schedule_stats as stats_table
from kanade.backend.store.upsert import greatest, insert
from kanade.core.instants import as_utc, parse_instant

RESULTS: Final = ("fired", "skipped", "missed")


def record(conn: Connection, rows: Sequence[Mapping[str, Any]], now: datetime) -> set[str]:
    """Store decision rows (see :func:`kanade.backend.workers.projection.decisions`); the
    schedule ids touched."""
    if not rows:
        return set()
    cols = {c.name for c in decisions.c}
    conn.execute(
        insert(conn, decisions).on_conflict_do_nothing(index_elements=["decision_id"]),
        [{k: v for k, v in r.items() if k in cols} for r in rows],
    )
    per: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["schedule_id"], r["pc_id"], r["epoch"])
        fired = r["result"] == "fired"
        new = {
            "schedule_id": r["schedule_id"],
            "pc_id": r["pc_id"],
            "epoch": r["epoch"],
            **{k: int(r["totals"][k]) for k in RESULTS},
            "last_fire_at": r["decided_at"] if fired else None,
            "last_nominal": r["nominal_time"] if fired else None,
            "updated_at": r["recorded_at"],
        }
        acc = per.get(key)
        if acc is None:
            per[key] = new
            continue
        for k in RESULTS:
            acc[k] = max(acc[k], new[k])
        for k in ("last_fire_at", "last_nominal", "updated_at"):
            if new[k] is not None and (acc[k] is None or new[k] > acc[k]):
                acc[k] = new[k]
    stmt = insert(conn, stats_table)
    x = stmt.excluded
    t = stats_table.c
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["schedule_id", "pc_id", "epoch"],
            set_={
                **{k: greatest(conn, t[k], x[k]) for k in RESULTS},
                "last_fire_at": greatest(conn, t.last_fire_at, x.last_fire_at),
                "last_nominal": greatest(conn, t.last_nominal, x.last_nominal),
                "updated_at": greatest(conn, t.updated_at, x.updated_at),
            },
        ),
        list(per.values()),
    )
    return {r["schedule_id"] for r in rows}


def stats(conn: Connection, schedule_ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per schedule: the counters summed over pcs (and epochs), the newest fire, how many
    pcs reported."""
    t = stats_table.c
    q = select(
        t.schedule_id,
        func.sum(t.fired),
        func.sum(t.skipped),
        func.sum(t.missed),
        func.max(t.last_fire_at),
        func.max(t.last_nominal),
        func.count(func.distinct(t.pc_id)),
    ).group_by(t.schedule_id)
    if schedule_ids is not None:
        q = q.where(t.schedule_id.in_(sorted(set(schedule_ids))))
    out: dict[str, dict[str, Any]] = {}
    for sid, fired, skipped, missed, last_fire, last_nominal, pcs in conn.execute(q):
        out[str(sid)] = {
            "fired": int(fired or 0),
            "skipped": int(skipped or 0),
            "missed": int(missed or 0),
            "last_fire_at": _instant(last_fire),
            "last_nominal": _instant(last_nominal),
            "pcs": int(pcs or 0),
        }
    return out


def _instant(value: Any) -> datetime | None:
    # max() over a UtcDateTime column comes back as the raw type on SQLite (naive text).
    if value is None:
        return None
    return parse_instant(value) if isinstance(value, str) else as_utc(value)


def recent(conn: Connection, schedule_id: str, limit: int = 20) -> list[dict[str, Any]]:
    q = (
        select(decisions)
        .where(decisions.c.schedule_id == schedule_id)
        .order_by(decisions.c.recorded_at.desc(), decisions.c.decision_id.desc())
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


def totals(conn: Connection) -> dict[str, int]:
    """Every agent's counters added up, per result (``/metrics``)."""
    t = stats_table.c
    row = conn.execute(select(func.sum(t.fired), func.sum(t.skipped), func.sum(t.missed))).one()
    return {k: int(v or 0) for k, v in zip(RESULTS, row, strict=True)}
