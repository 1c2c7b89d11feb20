"""The scheduler's SQL reads and writes (each a function of an open connection, run in
the caller's transaction through :class:`~kanade.backend.store.database.Database`).

A change to a schedule's counters or decisions is noted for the schedule's document in KV
``kanade_state`` (:mod:`kanade.backend.store.state_outbox`): a wiped database gets them back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, delete, false, func, select, update
from sqlalchemy.engine import Connection

from kanade.backend.store.executions import new_exec_rows
from kanade.backend.store.scripts import store_scripts
from kanade.backend.store.state_outbox import touch
from kanade.backend.store.tables import (
    executions,
    results,
    schedule_decisions,
    schedule_pc_last,
    schedule_stats,
)
from kanade.backend.store.upsert import insert
from kanade.core.instants import as_utc, parse_instant
from kanade.core.statuses import ExecStatus

_CHUNK = 200
IN_FLIGHT_STATUSES = (ExecStatus.PENDING, ExecStatus.RUNNING)
"""Dispatched and not finished (awaiting approval is not dispatched yet)."""


@dataclass(frozen=True)
class DecisionRow:
    schedule_id: str
    occurrence_id: str
    nominal_time: datetime | None
    result: str  # fired | skipped | missed | duplicate
    reason: str | None = None
    detail: str | None = None
    exec_id: str | None = None
    pcs: int | None = None
    lateness_s: float | None = None
    count: int = 1
    """How many occurrences this row stands for (a ``missed`` row lists several)."""
    decided_at: datetime | None = None
    """When the decision counts as made (default: the batch's ``now``). A fire prepared
    ahead is recorded when it is claimed, before its instant, as decided at its nominal
    time: the decision made early stands for the tick at that instant."""


def claim_executions(
    conn: Connection, rows: Sequence[Mapping[str, Any]], now: datetime
) -> set[str]:
    """Insert exec rows that do not exist yet; the exec_ids this call created.

    The exec_id of a scheduled fire is derived from its occurrence, so a row that already
    exists means the occurrence was fired already (by us before a restart, or by another
    backend): the caller must not publish it as a new fire.
    """
    claimed: set[str] = set()
    full = new_exec_rows(rows, now)
    if not full:
        return claimed
    store_scripts(conn, rows, now)
    # executemany + RETURNING: SQLAlchemy batches it as "insertmanyvalues" with a cached
    # compiled statement (a .values(list) statement would be recompiled for every batch).
    stmt = (
        insert(conn, executions)
        .on_conflict_do_nothing(index_elements=["exec_id"])
        .returning(executions.c.exec_id)
    )
    claimed.update(str(r[0]) for r in conn.execute(stmt, full))
    # No counter refresh: a row created here has no results yet (one with results would
    # already exist); the execs projector refreshes counters when it upserts the record.
    return claimed


def release_executions(conn: Connection, exec_ids: Iterable[str], now: datetime) -> set[str]:
    """Undo the claims of fires prepared ahead that will not go out as prepared (the
    schedule, its job or the freeze changed before the instant): the exec ids released.

    Only untouched rows go: still ``pending`` with no started or finished result. Nothing
    of such a fire was published, so nothing can refer to the row; deleting it lets the
    occurrence be claimed afresh with what holds at the instant. The ``fired`` decision
    recorded with the claim goes too, and the schedule's counters and last fire are put
    back (to its newest remaining fire). A row an operator already acted on (cancelled)
    stays, with its decision, as the record of that act.
    """
    ids = sorted(set(exec_ids))
    released: set[str] = set()
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        untouched = and_(
            executions.c.exec_id.in_(chunk),
            executions.c.status == ExecStatus.PENDING,
            executions.c.started_count == 0,
            executions.c.finished_count == 0,
        )
        found = {str(r[0]) for r in conn.execute(select(executions.c.exec_id).where(untouched))}
        if found:
            conn.execute(delete(executions).where(untouched, executions.c.exec_id.in_(found)))
            released |= found
    if not released:
        return released
    fired = and_(
        schedule_decisions.c.exec_id.in_(sorted(released)),
        schedule_decisions.c.result == "fired",
    )
    per_schedule: dict[str, int] = {}
    for (sid,) in conn.execute(select(schedule_decisions.c.schedule_id).where(fired)):
        per_schedule[str(sid)] = per_schedule.get(str(sid), 0) + 1
    conn.execute(delete(schedule_decisions).where(fired))
    for sid, n in per_schedule.items():
        touch(conn, "schedule", sid)
        newest = conn.execute(
            select(
                schedule_decisions.c.decided_at,
                schedule_decisions.c.nominal_time,
                schedule_decisions.c.exec_id,
            )
            .where(
                schedule_decisions.c.schedule_id == sid,
                schedule_decisions.c.result == "fired",
            )
            .order_by(schedule_decisions.c.id.desc())
            .limit(1)
        ).first()
        values: dict[str, Any] = {
            "fired": func.max(0, schedule_stats.c.fired - n)
            if conn.dialect.name == "sqlite"
            else func.greatest(0, schedule_stats.c.fired - n),
            "updated_at": now,
        }
        last = schedule_stats.c.last_exec_id.in_(sorted(released))
        conn.execute(
            update(schedule_stats).where(schedule_stats.c.schedule_id == sid).values(values)
        )
        conn.execute(
            update(schedule_stats)
            .where(schedule_stats.c.schedule_id == sid, last)
            .values(
                last_fire_at=None if newest is None else newest[0],
                last_nominal=None if newest is None else newest[1],
                last_exec_id=None if newest is None else newest[2],
            )
        )
    return released


def existing_executions(conn: Connection, exec_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    ids = sorted(set(exec_ids))
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), _CHUNK):
        q = select(executions).where(executions.c.exec_id.in_(ids[i : i + _CHUNK]))
        for row in conn.execute(q).mappings():
            out[str(row["exec_id"])] = dict(row)
    return out


def record_decisions(conn: Connection, rows: Sequence[DecisionRow], now: datetime) -> None:
    """Append decisions to the log and add them to the per-schedule counters."""
    if not rows:
        return
    conn.execute(
        schedule_decisions.insert(),
        [
            {
                "schedule_id": r.schedule_id,
                "occurrence_id": r.occurrence_id,
                "nominal_time": r.nominal_time,
                "decided_at": r.decided_at or now,
                "result": r.result,
                "reason": r.reason,
                "detail": r.detail,
                "exec_id": r.exec_id,
                "pcs": r.pcs,
                "lateness_s": r.lateness_s,
            }
            for r in rows
        ],
    )
    per: dict[str, dict[str, Any]] = {}
    for r in rows:
        acc = per.setdefault(
            r.schedule_id,
            {
                "schedule_id": r.schedule_id,
                "fired": 0,
                "skipped": 0,
                "missed": 0,
                "last_fire_at": None,
                "last_nominal": None,
                "last_exec_id": None,
                "updated_at": now,
            },
        )
        if r.result in ("fired", "skipped", "missed"):
            acc[r.result] += r.count
        if r.result == "fired":
            at = r.decided_at or now
            acc |= {"last_fire_at": at, "last_nominal": r.nominal_time, "last_exec_id": r.exec_id}
    stmt = insert(conn, schedule_stats)
    keep = func.coalesce  # a batch without a fire keeps the previous last fire
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["schedule_id"],
            set_={
                "fired": schedule_stats.c.fired + stmt.excluded.fired,
                "skipped": schedule_stats.c.skipped + stmt.excluded.skipped,
                "missed": schedule_stats.c.missed + stmt.excluded.missed,
                "updated_at": stmt.excluded.updated_at,
                "last_fire_at": keep(stmt.excluded.last_fire_at, schedule_stats.c.last_fire_at),
                "last_nominal": keep(stmt.excluded.last_nominal, schedule_stats.c.last_nominal),
                "last_exec_id": keep(stmt.excluded.last_exec_id, schedule_stats.c.last_exec_id),
            },
        ),
        list(per.values()),
    )
    for sid in per:
        touch(conn, "schedule", sid)


@dataclass
class ReconcileFacts:
    last_success: dict[str, datetime]
    last_result: dict[str, datetime]


def reconcile_facts(conn: Connection, schedule_ids: Iterable[str]) -> dict[str, ReconcileFacts]:
    """Per schedule and pc: the last success (finished, exit 0, not skipped) and the last
    finished result of any kind, by the stream time it was recorded (backend clock side,
    immune to agent clock skew)."""
    ids = sorted(set(schedule_ids))
    out = {sid: ReconcileFacts({}, {}) for sid in ids}
    success = and_(results.c.exit_code == 0, results.c.skipped == false())
    for i in range(0, len(ids), _CHUNK):
        q = (
            select(
                results.c.schedule_id,
                results.c.pc_id,
                func.max(case((success, results.c.recorded_at), else_=None)),
                func.max(results.c.recorded_at),
            )
            .where(
                results.c.schedule_id.in_(ids[i : i + _CHUNK]),
                results.c.state.in_(("finished", "reaped")),
            )
            .group_by(results.c.schedule_id, results.c.pc_id)
        )
        for sid, pc, ok_at, any_at in conn.execute(q):
            facts = out[str(sid)]
            if ok_at is not None:
                facts.last_success[str(pc)] = _aware(ok_at)
            if any_at is not None:
                facts.last_result[str(pc)] = _aware(any_at)
        # What retention pruned: a success no longer a row still counts (store.retention).
        pruned = select(schedule_pc_last).where(
            schedule_pc_last.c.schedule_id.in_(ids[i : i + _CHUNK])
        )
        for sid, pc, ok_at, any_at in conn.execute(pruned):
            facts = out[str(sid)]
            _newest(facts.last_success, str(pc), ok_at)
            _newest(facts.last_result, str(pc), any_at)
    return out


def _newest(into: dict[str, datetime], pc: str, at: datetime | None) -> None:
    if at is not None and (pc not in into or into[pc] < at):
        into[pc] = at


def _aware(value: Any) -> datetime:
    # max() over a UtcDateTime column comes back as the raw type on SQLite (naive text).
    return parse_instant(value) if isinstance(value, str) else as_utc(value)


def in_flight_by_job(conn: Connection, job_ids: Iterable[str]) -> dict[str, int]:
    """Runs of each job dispatched and not yet finished, fleet-wide (every exec of the job
    still pending or running: expected minus finished)."""
    ids = sorted(set(job_ids))
    out = dict.fromkeys(ids, 0)
    if not ids:
        return out
    q = (
        select(
            executions.c.job_id,
            func.sum(executions.c.expected_count - executions.c.finished_count),
        )
        .where(executions.c.job_id.in_(ids), executions.c.status.in_(IN_FLIGHT_STATUSES))
        .group_by(executions.c.job_id)
    )
    for job_id, n in conn.execute(q):
        out[str(job_id)] = max(0, int(n or 0))
    return out


def in_flight_execs_of_schedule(conn: Connection, schedule_id: str) -> list[str]:
    q = (
        select(executions.c.exec_id)
        .where(
            executions.c.schedule_id == schedule_id,
            executions.c.status.in_(IN_FLIGHT_STATUSES),
        )
        .order_by(executions.c.created_at)
    )
    return [str(r[0]) for r in conn.execute(q)]


def stats(conn: Connection, schedule_ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    q = select(schedule_stats)
    if schedule_ids is not None:
        q = q.where(schedule_stats.c.schedule_id.in_(sorted(set(schedule_ids))))
    return {str(r["schedule_id"]): dict(r) for r in conn.execute(q).mappings()}


def totals(conn: Connection) -> dict[str, int]:
    """The central scheduler's counters added up, per result (``/metrics``)."""
    t = schedule_stats.c
    row = conn.execute(select(func.sum(t.fired), func.sum(t.skipped), func.sum(t.missed))).one()
    return {k: int(v or 0) for k, v in zip(("fired", "skipped", "missed"), row, strict=True)}


def recent_decisions(conn: Connection, schedule_id: str, limit: int = 20) -> list[dict[str, Any]]:
    q = (
        select(schedule_decisions)
        .where(schedule_decisions.c.schedule_id == schedule_id)
        .order_by(schedule_decisions.c.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(q).mappings()]
