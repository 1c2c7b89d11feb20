"""Retention's SQL (SPEC §4.12): one small batch of the oldest prunable rows of a table per
call, in the caller's transaction, and the reads that decide how many are over a limit.

Every batch is ``SELECT`` the keys (``ORDER BY`` the table's time, ``LIMIT n``) then
``DELETE … WHERE key IN (…)``, so a transaction stays short and the projectors' writes get
in between. What is never pruned, and why: an exec that has not ended (nor its results), an
exec a pending approval or a live rollout needs, an exec newer than a still open one of its
job (closing that one reads it), an open enrolment token. Operator-state rows (approvals,
rollouts, schedule decisions, enrolment tokens) are noted in ``state_outbox`` when pruned,
so their KV documents follow (a tombstone) and a rebuilt database does not get them back.
The narrative: docs/retention.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Column, Table, and_, delete, func, or_, select, true, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from kanade.backend.store import projection_state
from kanade.backend.store.state_outbox import touch
from kanade.backend.store.tables import (
    agent_schedule_decisions,
    approvals,
    audit,
    enroll_tokens,
    exec_decisions,
    executions,
    inventory_history,
    results,
    rollout_waves,
    rollouts,
    schedule_decisions,
    schedule_pc_last,
)
from kanade.backend.store.upsert import chunks, greatest, insert
from kanade.core.instants import as_utc, parse_instant
from kanade.core.statuses import ROLLOUT_TRANSITIONS, ApprovalState, is_terminal

ENDED_ROLLOUT: Final = tuple(
    s.value for s in ROLLOUT_TRANSITIONS if is_terminal(ROLLOUT_TRANSITIONS, s)
)
"""Rollout statuses nothing moves any more (a halted one may still be resumed)."""

LAST_RUN_KEY: Final = "retention_last_run"
"""``projection_state`` key: the last complete pass (JSON), what ``GET /api/retention`` shows."""
AUDIT_PRUNED_THROUGH: Final = "retention_audit_through"
"""``projection_state`` key: the audit was pruned up to this stream sequence, inclusive."""


@dataclass
class Pruned:
    """What one batch deleted: ``rows`` of the table asked for, rows of other tables that
    went with them (an exec's results, …), the output objects of deleted results."""

    rows: int = 0
    cascaded: dict[str, int] = field(default_factory=dict)
    objects: list[str] = field(default_factory=list)
    schedules: set[str] = field(default_factory=set)
    """Schedules whose decisions log changed (their documents are noted)."""
    through_seq: int | None = None
    """Audit only: the highest sequence deleted."""

    def add(self, table: str, n: int) -> None:
        if n:
            self.cascaded[table] = self.cascaded.get(table, 0) + n


def _delete_in(conn: Connection, column: Column[Any], keys: Sequence[Any]) -> int:
    deleted = 0
    for chunk in chunks(list(keys)):
        deleted += int(conn.execute(delete(column.table).where(column.in_(chunk))).rowcount or 0)
    return deleted


# --- results ---------------------------------------------------------------------------------

_RESULT_COLUMNS = (
    results.c.result_id,
    results.c.exec_id,
    results.c.schedule_id,
    results.c.pc_id,
    results.c.state,
    results.c.exit_code,
    results.c.skipped,
    results.c.recorded_at,
    results.c.stdout_ref,
    results.c.stderr_ref,
)


def _open_exec_of(exec_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """An exec row of ``exec_id`` that has not ended (its results are still needed)."""
    return (
        select(executions.c.exec_id)
        .where(executions.c.exec_id == exec_id, executions.c.ended_at.is_(None))
        .exists()
    )


def prune_results(
    conn: Connection, *, before: datetime | None, limit: int, now: datetime
) -> Pruned:
    """Up to ``limit`` of the oldest results (recorded before ``before`` when given) whose
    exec has ended (or is no row at all)."""
    q = select(*_RESULT_COLUMNS).where(~_open_exec_of(results.c.exec_id))
    if before is not None:
        q = q.where(results.c.recorded_at < before)
    rows = conn.execute(q.order_by(results.c.recorded_at).limit(limit)).all()
    out = Pruned()
    out.rows = _delete_results(conn, rows, now, out)
    return out


def _delete_results(conn: Connection, rows: Sequence[Any], now: datetime, out: Pruned) -> int:
    """Delete ``rows`` (``_RESULT_COLUMNS``): first what must outlive them — the newest
    success and result per (schedule, pc), the fact that the exec's counters are now
    history — then the rows; their output objects are handed back for deletion."""
    if not rows:
        return 0
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r.schedule_id is None or r.state not in ("finished", "reaped"):
            continue
        acc = last.setdefault(
            (r.schedule_id, r.pc_id),
            {
                "schedule_id": r.schedule_id,
                "pc_id": r.pc_id,
                "last_success_at": None,
                "last_result_at": None,
            },
        )
        if acc["last_result_at"] is None or r.recorded_at > acc["last_result_at"]:
            acc["last_result_at"] = r.recorded_at
        newest_success = acc["last_success_at"] is None or r.recorded_at > acc["last_success_at"]
        if r.exit_code == 0 and not r.skipped and newest_success:
            acc["last_success_at"] = r.recorded_at
    if last:
        stmt = insert(conn, schedule_pc_last)
        t, x = schedule_pc_last.c, stmt.excluded
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["schedule_id", "pc_id"],
                set_={
                    "last_success_at": greatest(conn, t.last_success_at, x.last_success_at),
                    "last_result_at": greatest(conn, t.last_result_at, x.last_result_at),
                },
            ),
            list(last.values()),
        )
    exec_ids = sorted({str(r.exec_id) for r in rows})
    for chunk in chunks(exec_ids):
        conn.execute(
            update(executions)
            .where(executions.c.exec_id.in_(chunk), executions.c.results_pruned_at.is_(None))
            .values(results_pruned_at=now)
        )
    for r in rows:
        out.objects += [ref for ref in (r.stdout_ref, r.stderr_ref) if ref]
    return _delete_in(conn, results.c.result_id, [r.result_id for r in rows])


# --- executions ------------------------------------------------------------------------------


def _prunable_execs() -> ColumnElement[bool]:
    e = executions.c
    older = executions.alias("older")
    pending_approval = (
        select(approvals.c.exec_id)
        .where(approvals.c.exec_id == e.exec_id, approvals.c.state == ApprovalState.PENDING)
        .exists()
    )
    live_rollout = (
        select(rollouts.c.rollout_id)
        .where(rollouts.c.rollout_id == e.exec_id, rollouts.c.status.not_in(ENDED_ROLLOUT))
        .exists()
    )
    # Closing an open exec looks for newer execs of its job that replaced its commands
    # (store.unstarted): those must still be there.
    open_older = (
        select(older.c.exec_id)
        .where(
            older.c.job_id == e.job_id,
            older.c.created_at < e.created_at,
            older.c.ended_at.is_(None),
        )
        .exists()
    )
    return and_(e.ended_at.is_not(None), ~pending_approval, ~live_rollout, ~open_older)


def prune_executions(
    conn: Connection, *, before: datetime | None, limit: int, now: datetime
) -> Pruned:
    """Up to ``limit`` of the oldest ended execs (ended before ``before`` when given) with
    everything that belongs to them: results (at most ``limit`` rows per call — an exec
    goes once its results are gone), decisions, approval, rollout and its waves."""
    q = select(executions.c.exec_id).where(_prunable_execs())
    if before is not None:
        q = q.where(executions.c.ended_at < before)
    # The order of ix_executions_ended_at_deadline_at: no sort, however many rows qualify.
    q = q.order_by(executions.c.ended_at, executions.c.deadline_at)
    ids = [str(i) for (i,) in conn.execute(q.limit(limit))]
    out = Pruned()
    if not ids:
        return out
    rows: list[Any] = []
    for chunk in chunks(ids):
        room = limit + 1 - len(rows)  # one more than deleted: are there more?
        if room <= 0:
            break
        found = select(*_RESULT_COLUMNS).where(results.c.exec_id.in_(chunk)).limit(room)
        rows += conn.execute(found).all()
    out.add("results", _delete_results(conn, rows[:limit], now, out))
    if len(rows) > limit:
        return out  # more results first; the execs go in a later batch
    out.add("exec_decisions", _delete_in(conn, exec_decisions.c.exec_id, ids))
    gone_approvals = _keys(conn, approvals.c.exec_id, ids)
    out.add("approvals", _delete_in(conn, approvals.c.exec_id, gone_approvals))
    for exec_id in gone_approvals:
        touch(conn, "approval", exec_id)
    gone_rollouts = _keys(conn, rollouts.c.rollout_id, ids)
    out.add("rollout_waves", _delete_in(conn, rollout_waves.c.rollout_id, gone_rollouts))
    out.add("rollouts", _delete_in(conn, rollouts.c.rollout_id, gone_rollouts))
    for rollout_id in gone_rollouts:
        touch(conn, "rollout", rollout_id)
    out.rows = _delete_in(conn, executions.c.exec_id, ids)
    return out


def _keys(conn: Connection, column: Column[Any], among: Sequence[str]) -> list[str]:
    found: list[str] = []
    for chunk in chunks(list(among)):
        found += [str(k) for (k,) in conn.execute(select(column).where(column.in_(chunk)))]
    return found


# --- inventory history, audit ----------------------------------------------------------------


def prune_inventory_history(conn: Connection, *, before: datetime | None, limit: int) -> Pruned:
    """Up to ``limit`` of the oldest reports kept in the history (the latest facts per pc
    and job, ``inventory``, are state and stay)."""
    t = inventory_history.c
    q = select(t.result_id)
    if before is not None:
        q = q.where(t.recorded_at < before)
    ids = [str(i) for (i,) in conn.execute(q.order_by(t.recorded_at).limit(limit))]
    return Pruned(rows=_delete_in(conn, t.result_id, ids))


def prune_audit(conn: Connection, *, before: datetime | None, limit: int, now: datetime) -> Pruned:
    """Up to ``limit`` of the oldest audit records, always a prefix by stream sequence (the
    trail left is complete from some sequence on: no holes), recorded before ``before``
    when given. The highest sequence pruned is kept (:data:`AUDIT_PRUNED_THROUGH`), so a
    reader can tell records removed by retention from records missing."""
    q = select(audit.c.seq, audit.c.recorded_at).order_by(audit.c.seq).limit(limit)
    through: int | None = None
    for seq, recorded_at in conn.execute(q):
        if before is not None and recorded_at >= before:
            break
        through = int(seq)
    if through is None:
        return Pruned()
    deleted = int(conn.execute(delete(audit).where(audit.c.seq <= through)).rowcount or 0)
    previous = audit_pruned_through(conn)
    if previous is None or through > previous:
        projection_state.set_state(conn, AUDIT_PRUNED_THROUGH, str(through), now)
    return Pruned(rows=deleted, through_seq=through)


def audit_pruned_through(conn: Connection) -> int | None:
    """The highest audit sequence retention removed (None: none yet, in this database)."""
    value = projection_state.get_state(conn, AUDIT_PRUNED_THROUGH)
    return None if value is None else int(value)


# --- schedule decisions -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Log:
    """A per-schedule decisions log: its table, key, time column and newest-first order."""

    table: Table
    key: str
    time: str
    order: tuple[str, ...]
    mirrored: bool
    """Its rows are in the schedule's operator-state document (noted when pruned)."""

    def column(self, name: str) -> Column[Any]:
        return self.table.c[name]


LOGS: Final[Mapping[str, _Log]] = {
    "schedule_decisions": _Log(schedule_decisions, "id", "decided_at", ("id",), True),
    "agent_schedule_decisions": _Log(
        agent_schedule_decisions,
        "decision_id",
        "recorded_at",
        ("recorded_at", "decision_id"),
        False,
    ),
}


def _delete_log_rows(conn: Connection, log: _Log, found: Sequence[Any]) -> Pruned:
    out = Pruned(rows=_delete_in(conn, log.column(log.key), [r[0] for r in found]))
    out.schedules = {str(r[1]) for r in found}
    if log.mirrored:
        for sid in sorted(out.schedules):
            touch(conn, "schedule", sid)
    return out


def prune_log_by_age(conn: Connection, table: str, *, before: datetime, limit: int) -> Pruned:
    """Up to ``limit`` decisions older than ``before``, of any schedule."""
    log = LOGS[table]
    q = (
        select(log.column(log.key), log.column("schedule_id"))
        .where(log.column(log.time) < before)
        .order_by(log.column(log.time))
        .limit(limit)
    )
    return _delete_log_rows(conn, log, conn.execute(q).all())


def prune_log_by_count(conn: Connection, table: str, *, keep: int, limit: int) -> Pruned:
    """Up to ``limit`` decisions beyond the newest ``keep`` of each schedule."""
    log = LOGS[table]
    sid = log.column("schedule_id")
    over = conn.execute(select(sid).group_by(sid).having(func.count() > keep).order_by(sid)).all()
    found: list[Any] = []
    for (schedule_id,) in over:
        room = limit - len(found)
        if room <= 0:
            break
        q = (
            select(log.column(log.key), sid)
            .where(sid == schedule_id)
            .order_by(*(log.column(c).desc() for c in log.order))
            .offset(keep)
            .limit(room)
        )
        found += conn.execute(q).all()
    return _delete_log_rows(conn, log, found)


# --- enrolment tokens ---------------------------------------------------------------------------


def prune_enroll_tokens(conn: Connection, *, before: datetime, limit: int, now: datetime) -> Pruned:
    """Up to ``limit`` tokens created before ``before`` that can no longer be used (used,
    cancelled or expired); an open token is the admin's to cancel."""
    t = enroll_tokens.c
    spent = or_(t.used_at.is_not(None), t.cancelled == true(), t.expires_at < now)
    q = select(t.token_id).where(t.created_at < before, spent).order_by(t.created_at).limit(limit)
    ids = [str(i) for (i,) in conn.execute(q)]
    out = Pruned(rows=_delete_in(conn, t.token_id, ids))
    for token_id in ids:
        touch(conn, "enroll_token", token_id)
    return out


# --- reads --------------------------------------------------------------------------------------

COUNTED: Final[Mapping[str, Table]] = {
    "results": results,
    "executions": executions,
    "inventory_history": inventory_history,
    "audit": audit,
}
"""Tables with one count limit for the whole table."""


def count_rows(conn: Connection, table: str) -> int:
    return int(conn.execute(select(func.count()).select_from(COUNTED[table])).scalar_one())


_OLDEST: Final[Mapping[str, ColumnElement[Any]]] = {
    "results": func.min(results.c.recorded_at),
    "executions": func.min(executions.c.created_at),
    "inventory_history": func.min(inventory_history.c.recorded_at),
    "audit": func.min(audit.c.recorded_at),
    "schedule_decisions": func.min(schedule_decisions.c.decided_at),
    "agent_schedule_decisions": func.min(agent_schedule_decisions.c.recorded_at),
    "enroll_tokens": func.min(enroll_tokens.c.created_at),
}


def oldest(conn: Connection) -> dict[str, datetime | None]:
    """The oldest row each pruned table still holds (by the time it is pruned on; each read
    is a walk to one end of an index, or over a small table)."""
    out: dict[str, datetime | None] = {}
    for table, expr in _OLDEST.items():
        value = conn.execute(select(expr)).scalar_one()
        out[table] = _instant(value)
    return out


def note_last_run(conn: Connection, record: Mapping[str, Any], now: datetime) -> None:
    projection_state.set_state(conn, LAST_RUN_KEY, json.dumps(dict(record)), now)


def last_run(conn: Connection) -> dict[str, Any] | None:
    """The last complete pass as the worker recorded it (None before the first)."""
    raw = projection_state.get_state(conn, LAST_RUN_KEY)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _instant(value: Any) -> datetime | None:
    # min() over a UtcDateTime column comes back as the raw type on SQLite (naive text).
    if value is None:
        return None
    return parse_instant(value) if isinstance(value, str) else as_utc(value)
