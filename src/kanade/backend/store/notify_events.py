"""``notify_events``: facts worth telling, and the reads that find them (docs/notifications.md).

The detector (:mod:`kanade.backend.workers.notify.detector`) reads each source in keyset
order — ``(time, key) > cursor`` — so a pass is bounded and resumes where it stopped;
:func:`record_events` keeps each fact once (its id is derived from it), and
:func:`fan_out` turns recorded events into deliveries (:mod:`.deliveries`) in the same
transaction that marks them fanned out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, false, or_, select, true, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from kanade.backend.store.paging import Record
from kanade.backend.store.tables import (
    agent_schedule_decisions,
    agents,
    executions,
    notify_deliveries,
    notify_events,
    results,
    rollout_waves,
    rollouts,
    schedule_decisions,
)
from kanade.backend.store.upsert import chunks, insert
from kanade.backend.store.webhooks import enabled_webhooks
from kanade.core.execends import NO_RESULT
from kanade.core.notify.events import Event
from kanade.core.notify.fanout import plan
from kanade.core.statuses import DeliveryStatus, ExecStatus, RolloutStatus


@dataclass(frozen=True)
class Cursor:
    """Where a scan of one source resumes: rows after ``(at, key)``."""

    at: datetime
    key: str = ""


def _after(time_col: Any, key_col: Any, cursor: Cursor) -> ColumnElement[bool]:
    # The plain range first: it is what lets the planner use the time index (an OR alone
    # made SQLite read every completed exec).
    return and_(
        time_col >= cursor.at,
        or_(time_col > cursor.at, and_(time_col == cursor.at, key_col > cursor.key)),
    )


# --- sources ---------------------------------------------------------------------------


def failed_execs(conn: Connection, cursor: Cursor, until: datetime, limit: int) -> list[Record]:
    """Completed execs with at least one failed pc, changed after ``cursor``."""
    q = (
        select(
            executions.c.exec_id,
            executions.c.kind,
            executions.c.job_id,
            executions.c.version,
            executions.c.failed_count,
            executions.c.expected_count,
            executions.c.finished_count,
            executions.c.no_result_count,
            executions.c.initiated_by,
            executions.c.schedule_id,
            executions.c.updated_at,
        )
        .where(
            executions.c.status == ExecStatus.COMPLETED,
            executions.c.failed_count > 0,
            executions.c.updated_at <= until,
            _after(executions.c.updated_at, executions.c.exec_id, cursor),
        )
        .order_by(executions.c.updated_at, executions.c.exec_id)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


def failed_pcs(conn: Connection, exec_ids: Sequence[str], per_exec: int) -> dict[str, list[str]]:
    """Up to ``per_exec`` pcs that failed in each exec (for the event's text)."""
    failed = or_(
        results.c.state.in_(("reaped", NO_RESULT)),
        and_(results.c.state == "finished", results.c.skipped == false(), results.c.exit_code != 0),
    )
    out: dict[str, list[str]] = {}
    for chunk in chunks(sorted(set(exec_ids))):
        q = (
            select(results.c.exec_id, results.c.pc_id)
            .where(results.c.exec_id.in_(chunk), failed)
            .order_by(results.c.exec_id, results.c.pc_id)
        )
        for exec_id, pc_id in conn.execute(q):
            pcs = out.setdefault(str(exec_id), [])
            if len(pcs) < per_exec:
                pcs.append(str(pc_id))
    return out


def central_decisions(
    conn: Connection, cursor: Cursor, until: datetime, limit: int
) -> list[Record]:
    """The central scheduler's skipped and missed decisions after ``cursor`` (key: row id,
    zero-padded so it orders as text)."""
    key = schedule_decisions.c.id
    q = (
        select(schedule_decisions)
        .where(
            schedule_decisions.c.result.in_(("skipped", "missed")),
            schedule_decisions.c.decided_at <= until,
            schedule_decisions.c.decided_at >= cursor.at,
            or_(
                schedule_decisions.c.decided_at > cursor.at,
                and_(
                    schedule_decisions.c.decided_at == cursor.at,
                    key > (int(cursor.key) if cursor.key.isdigit() else -1),
                ),
            ),
        )
        .order_by(schedule_decisions.c.decided_at, key)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


def agent_decisions(conn: Connection, cursor: Cursor, until: datetime, limit: int) -> list[Record]:
    """Agents' skipped and missed decisions projected after ``cursor`` (stream time)."""
    t = agent_schedule_decisions
    q = (
        select(t)
        .where(
            t.c.result.in_(("skipped", "missed")),
            t.c.recorded_at <= until,
            _after(t.c.recorded_at, t.c.decision_id, cursor),
        )
        .order_by(t.c.recorded_at, t.c.decision_id)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


def silent_agents(conn: Connection, cursor: Cursor, until: datetime, limit: int) -> list[Record]:
    """Agents whose last heartbeat is after ``cursor`` and at or before ``until`` (the
    caller shifts both by the threshold: their silence crossed it in that window)."""
    q = (
        select(agents.c.pc_id, agents.c.hostname, agents.c.last_seen, agents.c.stopped_at)
        .where(agents.c.last_seen <= until, _after(agents.c.last_seen, agents.c.pc_id, cursor))
        .order_by(agents.c.last_seen, agents.c.pc_id)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


def halted_rollouts(conn: Connection, cursor: Cursor, until: datetime, limit: int) -> list[Record]:
    """Halted rollouts changed after ``cursor``, with the halting wave's failure rate."""
    q = (
        select(rollouts)
        .where(
            rollouts.c.status == RolloutStatus.HALTED,
            rollouts.c.updated_at <= until,
            _after(rollouts.c.updated_at, rollouts.c.rollout_id, cursor),
        )
        .order_by(rollouts.c.updated_at, rollouts.c.rollout_id)
        .limit(limit)
    )
    found = [dict(r) for r in conn.execute(q).mappings()]
    keys = [(str(r["rollout_id"]), int(r["current_wave"]) - 1) for r in found]
    rates: dict[tuple[str, int], float | None] = {}
    if keys:
        q2 = select(rollout_waves.c.rollout_id, rollout_waves.c.idx, rollout_waves.c.failure_rate)
        q2 = q2.where(tuple_(rollout_waves.c.rollout_id, rollout_waves.c.idx).in_(keys))
        rates = {(str(r), int(i)): rate for r, i, rate in conn.execute(q2)}
    for r in found:
        r["failure_rate"] = rates.get((str(r["rollout_id"]), int(r["current_wave"]) - 1))
    return found


# --- events ----------------------------------------------------------------------------


def record_events(conn: Connection, events: Iterable[Event], now: datetime) -> int:
    """Insert the events not recorded yet; how many were new."""
    rows = {
        e.id: {
            "event_id": e.id,
            "key": e.key,
            "kind": e.kind.value,
            "occurred_at": e.occurred_at,
            "detected_at": now,
            "summary": e.summary,
            "details": dict(e.details),
            "threshold_s": e.threshold_s,
            "fanned_out": False,
        }
        for e in events
    }
    if not rows:
        return 0
    stmt = (
        insert(conn, notify_events)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(notify_events.c.event_id)
    )
    return len(list(conn.execute(stmt, list(rows.values()))))


def fan_out(conn: Connection, now: datetime, limit: int) -> int:
    """Deliveries for up to ``limit`` events not fanned out yet (oldest first), and those
    events marked; how many events were handled."""
    q = (
        select(notify_events)
        .where(notify_events.c.fanned_out == false())
        .order_by(notify_events.c.detected_at, notify_events.c.event_id)
        .limit(limit)
    )
    events = [dict(r) for r in conn.execute(q).mappings()]
    if not events:
        return 0
    planned = plan(enabled_webhooks(conn), events)
    if planned:
        stmt = insert(conn, notify_deliveries).on_conflict_do_nothing(
            index_elements=["delivery_id"]
        )
        conn.execute(
            stmt,
            [
                {
                    "delivery_id": p.delivery_id,
                    "webhook_id": p.webhook_id,
                    "kind": p.kind,
                    "event_ids": list(p.event_ids),
                    "summary": p.summary,
                    "status": DeliveryStatus.PENDING,
                    "attempts": 0,
                    "created_at": now,
                    "next_attempt_at": now,
                    "attempt_log": [],
                }
                for p in planned
            ],
        )
    conn.execute(
        update(notify_events)
        .where(notify_events.c.event_id == bindparam("b_id"))
        .values(fanned_out=True),
        [{"b_id": e["event_id"]} for e in events],
    )
    return len(events)


def mark_fanned_out(conn: Connection, event_ids: Iterable[str]) -> None:
    """Mark events as handled without fanning them out (a test notification's own)."""
    for chunk in chunks(sorted(set(event_ids))):
        conn.execute(
            update(notify_events).where(notify_events.c.event_id.in_(chunk)).values(fanned_out=True)
        )


def events_by_id(conn: Connection, event_ids: Iterable[str]) -> dict[str, Record]:
    out: dict[str, Record] = {}
    for chunk in chunks(sorted(set(event_ids))):
        q = select(notify_events).where(notify_events.c.event_id.in_(chunk))
        out.update((str(r["event_id"]), dict(r)) for r in conn.execute(q).mappings())
    return out


def recent_events(conn: Connection, limit: int) -> list[Record]:
    q = select(notify_events).order_by(notify_events.c.detected_at.desc()).limit(limit)
    return [dict(r) for r in conn.execute(q).mappings()]


def prune_events(conn: Connection, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` fanned-out events detected before ``before``."""
    ids = [
        str(i)
        for (i,) in conn.execute(
            select(notify_events.c.event_id)
            .where(notify_events.c.detected_at < before, notify_events.c.fanned_out == true())
            .limit(limit)
        )
    ]
    for chunk in chunks(ids):
        conn.execute(delete(notify_events).where(notify_events.c.event_id.in_(chunk)))
    return len(ids)
