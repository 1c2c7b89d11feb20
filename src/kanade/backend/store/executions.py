"""The ``executions`` table: one row per dispatch, its status and its counters.

Counters are recomputed from the ``results`` rows (never incremented), so redelivery is
harmless. The status is *derived* (:func:`kanade.core.execstatus.derive_status`) from the
row's creation status, its recorded decisions (``exec_decisions``) and those counters, so
the order facts are projected in never changes it (SPEC §4.3). A live decision (a kill, an
approval, a rejection) is recorded only if :data:`kanade.core.statuses.EXEC_TRANSITIONS`
allows it from the status the exec has at that moment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, false, func, or_, select, true, update
from sqlalchemy.engine import Connection

from kanade.backend.store.paging import Page, Record, page
from kanade.backend.store.tables import exec_decisions, executions, results
from kanade.backend.store.upsert import chunks, insert
from kanade.core.execends import NO_RESULT
from kanade.core.execstatus import DECISIONS, derive_status
from kanade.core.lifecycle import fallback_created_cutoff
from kanade.core.statuses import ExecStatus, can_transition

Row = Mapping[str, Any]
Hints = dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]]

# --- reads -----------------------------------------------------------------------------

# What the status is derived from, not something a view shows (the status is).
_INTERNAL = frozenset({"created_status"})
_VIEW = [c for c in executions.c if c.name not in _INTERNAL]


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
    q = select(*[c for c in _VIEW if c.name != "expected_pcs"])
    if job_id is not None:
        q = q.where(executions.c.job_id == job_id)
    if status is not None:
        q = q.where(executions.c.status == status)
    if initiated_by is not None:
        q = q.where(executions.c.initiated_by == initiated_by)
    if since is not None:
        q = q.where(executions.c.created_at >= since)
    q = q.order_by(executions.c.created_at.desc(), executions.c.exec_id.desc())
    return page(conn, q, limit, offset)


def get_execution(conn: Connection, exec_id: str) -> Record | None:
    row = conn.execute(select(*_VIEW).where(executions.c.exec_id == exec_id)).mappings()
    first = row.first()
    return None if first is None else dict(first)


def fact_hints(conn: Connection, exec_ids: Iterable[str]) -> Hints:
    """``exec_id → (inventory_hint, check_hint)`` for the execs that have any hint."""
    out: Hints = {}
    for chunk in chunks(sorted(set(exec_ids))):
        q = select(
            executions.c.exec_id, executions.c.inventory_hint, executions.c.check_hint
        ).where(
            executions.c.exec_id.in_(chunk),
            or_(executions.c.inventory_hint.is_not(None), executions.c.check_hint.is_not(None)),
        )
        for exec_id, inv, chk in conn.execute(q):
            if inv is not None or chk is not None:
                out[exec_id] = (inv, chk)
    return out


def count_by_status(conn: Connection, *, since: datetime | None = None) -> dict[str, int]:
    """Executions per status (created at or after ``since`` when given)."""
    q = select(executions.c.status, func.count()).group_by(executions.c.status)
    if since is not None:
        q = q.where(executions.c.created_at >= since)
    return {str(status): int(n) for status, n in conn.execute(q)}


def count_with_failures(conn: Connection, *, since: datetime) -> int:
    """Executions created at or after ``since`` with at least one failed result."""
    q = (
        select(func.count())
        .select_from(executions)
        .where(executions.c.created_at >= since, executions.c.failed_count > 0)
    )
    return int(conn.execute(q).scalar_one())


def pending_since(conn: Connection, cutoff: datetime, limit: int) -> list[tuple[str, str]]:
    """``(exec_id, status)`` of up to ``limit`` execs still pending, created at or
    before ``cutoff``."""
    q = (
        select(executions.c.exec_id, executions.c.status)
        .where(executions.c.status == ExecStatus.PENDING, executions.c.created_at <= cutoff)
        .limit(limit)
    )
    return [(str(e), str(s)) for e, s in conn.execute(q)]


LIVE_STATUSES: tuple[ExecStatus, ...] = (
    ExecStatus.PENDING,
    ExecStatus.RUNNING,
    ExecStatus.EXPIRED,
)
"""Statuses an exec leaves by itself once its deadline has passed (SPEC §4.3)."""
CLOSED_EARLY: tuple[ExecStatus, ...] = (ExecStatus.REJECTED, ExecStatus.CANCELLED)
"""Statuses whose unstarted pcs are closed at once: nothing reaches them any more."""


_ENDING_COLUMNS = tuple(
    executions.c[name]
    for name in (
        "exec_id", "job_id", "version", "status", "request_id", "target", "expected_pcs",
        "expected_count", "finished_count", "deadline_at", "created_at",
    )
)  # fmt: skip


def ending_row(conn: Connection, exec_id: str) -> Record | None:
    """The columns closing an exec's unstarted pcs needs (see :func:`ending_candidates`)."""
    q = select(*_ENDING_COLUMNS).where(executions.c.exec_id == exec_id)
    row = conn.execute(q).mappings().first()
    return None if row is None else dict(row)


def ending_candidates(conn: Connection, due_before: datetime, limit: int) -> list[Record]:
    """Up to ``limit`` execs that have not ended yet and may have expected pcs to close
    (SPEC §4.3): those whose deadline is at or before ``due_before`` (``now - grace``; a
    row without a deadline uses the command lifetime from its creation) — completed ones
    too: an unexpected pc's result can complete an exec an expected pc never answered —
    and rejected or cancelled ones at once. Earliest deadline first."""
    due = or_(
        executions.c.deadline_at <= due_before,
        and_(
            executions.c.deadline_at.is_(None),
            executions.c.created_at <= fallback_created_cutoff(due_before),
        ),
    )
    q = (
        select(*_ENDING_COLUMNS)
        .where(
            executions.c.ended_at.is_(None),
            executions.c.status != ExecStatus.AWAITING_APPROVAL,
            or_(due, executions.c.status.in_(CLOSED_EARLY)),
        )
        .order_by(executions.c.deadline_at, executions.c.created_at)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


def newer_of_job(
    conn: Connection, job_id: str, *, after: datetime, until: datetime, limit: int = 50
) -> list[tuple[str, dict[str, Any]]]:
    """``(exec_id, target)`` of up to ``limit`` execs of ``job_id`` created after ``after``
    and at or before ``until``, oldest first: those that may have superseded an older
    exec's command in the queue."""
    q = (
        select(executions.c.exec_id, executions.c.target)
        .where(
            executions.c.job_id == job_id,
            executions.c.created_at > after,
            executions.c.created_at <= until,
        )
        .order_by(executions.c.created_at, executions.c.exec_id)
        .limit(limit)
    )
    return [(str(e), dict(t or {})) for e, t in conn.execute(q)]


# --- writes ----------------------------------------------------------------------------

_EXEC_RECORD_COLUMNS = (
    "kind", "job_id", "version", "target", "expected_pcs", "expected_count",
    "initiated_by", "schedule_id", "nominal_time", "created_at", "request_id",
    "inventory_hint", "check_hint", "created_status",
)  # fmt: skip


def new_exec_rows(rows: Iterable[Mapping[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Creation records as whole rows: updated ``now``, every counter at zero; the record's
    status is also the status the row was created with (what the status derives from)."""
    return [
        {
            **row,
            "created_status": row.get("created_status") or row["status"],
            "updated_at": now,
            "started_count": 0,
            "finished_count": 0,
            "failed_count": 0,
            "skipped_count": 0,
            "no_result_count": 0,
        }
        for row in rows
    ]


def upsert_executions(conn: Connection, rows: Sequence[Row], now: datetime) -> None:
    """Create or refresh execution rows from their creation records.

    The one implementation behind both the API (read-your-own-write) and the
    ``projector-execs`` consumer (rebuild from the stream). Status and counters are
    not taken from the record — they are the projector's, derived from the results —
    so re-projecting an old record never resets a running exec to pending.
    """
    if not rows:
        return
    full = new_exec_rows(rows, now)
    stmt = insert(conn, executions)
    stmt = stmt.on_conflict_do_update(
        index_elements=["exec_id"],
        set_={
            **{c: stmt.excluded[c] for c in _EXEC_RECORD_COLUMNS},
            # A deadline known already (set by an approval or a rollout wave after the
            # record) is kept: a replayed creation record never forgets it.
            "deadline_at": func.coalesce(executions.c.deadline_at, stmt.excluded.deadline_at),
        },
    )
    conn.execute(stmt, full)
    # Results may have been projected before the record (replay order, or a slow API
    # write): count them now.
    refresh_exec_counters(conn, [str(r["exec_id"]) for r in rows], now)


def refresh_exec_counters(conn: Connection, exec_ids: Iterable[str], now: datetime) -> None:
    """Recompute counters of ``exec_ids`` from their results rows and derive their status.

    Counting (instead of incrementing) is what makes redelivery harmless; an exec some of
    whose results were pruned is left as it is. ``finished``
    includes reaped and no_result rows — such a pc will not report any more, so it must not
    hold the exec open; they also count as failed. Skipped results are finished, not failed.
    """
    ids = sorted(set(exec_ids))
    if not ids:
        return
    # A no_result row (an expected pc that never started, closed at the exec's deadline)
    # is finished and failed like a reaped one, but it never started.
    done = results.c.state.in_(("finished", "reaped", NO_RESULT))
    began = results.c.state != NO_RESULT
    failed = or_(
        results.c.state.in_(("reaped", NO_RESULT)),
        and_(
            results.c.state == "finished",
            results.c.skipped == false(),
            results.c.exit_code != 0,
        ),
    )
    skipped = and_(results.c.state == "finished", results.c.skipped == true())
    counts: dict[str, tuple[int, int, int, int, int]] = {}
    current: dict[str, tuple[str, int, bool]] = {}
    decided: dict[str, dict[str, datetime | None]] = {}
    for chunk in chunks(ids):
        q = (
            select(
                results.c.exec_id,
                func.sum(case((began, 1), else_=0)),
                func.sum(case((done, 1), else_=0)),
                func.sum(case((failed, 1), else_=0)),
                func.sum(case((skipped, 1), else_=0)),
                func.sum(case((results.c.state == NO_RESULT, 1), else_=0)),
            )
            .where(results.c.exec_id.in_(chunk))
            .group_by(results.c.exec_id)
        )
        for exec_id, *numbers in conn.execute(q):
            n_started, n_finished, n_failed, n_skipped, n_closed = (int(n) for n in numbers)
            counts[exec_id] = (n_started, n_finished, n_failed, n_skipped, n_closed)
        # An exec whose results retention pruned keeps the counters it had: they are history,
        # and the rows left would undercount them (docs/retention.md).
        q2 = select(
            executions.c.exec_id,
            executions.c.status,
            executions.c.created_status,
            executions.c.expected_count,
            executions.c.ended_at,
        ).where(executions.c.exec_id.in_(chunk), executions.c.results_pruned_at.is_(None))
        for exec_id, status, created, expected, ended_at in conn.execute(q2):
            current[exec_id] = (created or status, expected, ended_at is not None)
        q3 = select(exec_decisions.c.exec_id, exec_decisions.c.status, exec_decisions.c.at).where(
            exec_decisions.c.exec_id.in_(chunk)
        )
        for exec_id, status, at in conn.execute(q3):
            decided.setdefault(exec_id, {})[str(status)] = at

    updates = []
    for exec_id, (created, expected, ended) in current.items():
        n_started, n_finished, n_failed, n_skipped, n_closed = counts.get(
            exec_id, (0, 0, 0, 0, 0)
        )
        updates.append(
            {
                "b_exec_id": exec_id,
                "b_status": derive_status(
                    created,
                    decided.get(exec_id, {}),
                    started=n_started,
                    finished=n_finished,
                    expected=expected,
                    ended=ended,
                ).value,
                "b_started": n_started,
                "b_finished": n_finished,
                "b_failed": n_failed,
                "b_skipped": n_skipped,
                "b_closed": n_closed,
                "b_now": now,
            }
        )
    if updates:
        stmt = (
            update(executions)
            .where(executions.c.exec_id == bindparam("b_exec_id"))
            .values(
                status=bindparam("b_status"),
                started_count=bindparam("b_started"),
                finished_count=bindparam("b_finished"),
                failed_count=bindparam("b_failed"),
                skipped_count=bindparam("b_skipped"),
                no_result_count=bindparam("b_closed"),
                updated_at=bindparam("b_now"),
            )
        )
        conn.execute(stmt, updates)


def record_decisions(
    conn: Connection,
    decisions: Iterable[tuple[str, str, datetime | None, str | None]],
    now: datetime,
) -> None:
    """Record ``(exec_id, status, at, by)`` decisions as facts and re-derive those execs.

    Insert-if-absent: a redelivered record (or the record of a decision this backend
    already made live) changes nothing. A decision for an exec whose row does not exist
    yet is kept and counts once the row arrives.
    """
    kept = [(e, str(s), at, by) for e, s, at, by in decisions if s in DECISIONS]
    if not kept:
        return
    stmt = insert(conn, exec_decisions).on_conflict_do_nothing(
        index_elements=["exec_id", "status"]
    )
    conn.execute(stmt, [{"exec_id": e, "status": s, "at": at, "by": by} for e, s, at, by in kept])
    refresh_exec_counters(conn, [e for e, _, _, _ in kept], now)


def apply_exec_status(
    conn: Connection,
    exec_id: str,
    status: str,
    now: datetime,
    *,
    at: datetime | None = None,
    by: str | None = None,
) -> bool:
    """Project a decision record (``kanade.exec.<event>.<exec_id>``): record it as a fact
    and re-derive the exec; True when its status changed.

    No transition check here: a record exists only because the decision was allowed when
    it was made (:func:`set_exec_status`), whatever the row looks like during a replay.
    """
    if status not in DECISIONS:
        return False
    before = _status_of(conn, exec_id)
    record_decisions(conn, [(exec_id, status, at, by)], now)
    return _status_of(conn, exec_id) != before


def expire_pending(conn: Connection, exec_ids: Sequence[str], now: datetime) -> None:
    """``pending`` → ``expired`` for ``exec_ids`` (only rows still pending): the reaper's
    decision, recorded as a fact (a late result still moves the exec on)."""
    if not exec_ids:
        return
    still = [
        str(e)
        for chunk in chunks(sorted(set(exec_ids)))
        for (e,) in conn.execute(
            select(executions.c.exec_id).where(
                executions.c.exec_id.in_(chunk), executions.c.status == ExecStatus.PENDING
            )
        )
    ]
    record_decisions(conn, [(e, ExecStatus.EXPIRED, now, None) for e in still], now)


def set_exec_status(
    conn: Connection, exec_id: str, new: str, now: datetime, *, by: str | None = None
) -> bool:
    """A live decision (approved → ``pending``, rejected, cancelled by a kill or an abort):
    recorded only if the status table allows it from where the exec is now; True when the
    exec moved."""
    current = _status_of(conn, exec_id)
    if current is None or current == new or not can_transition(current, new):
        return False
    record_decisions(conn, [(exec_id, new, now, by)], now)
    return _status_of(conn, exec_id) != current


def _status_of(conn: Connection, exec_id: str) -> str | None:
    status = conn.execute(
        select(executions.c.status).where(executions.c.exec_id == exec_id)
    ).scalar_one_or_none()
    return None if status is None else str(status)


def extend_deadline(conn: Connection, exec_id: str, deadline: datetime) -> None:
    """The exec's deadline becomes ``deadline`` unless it already is later: an approval
    sends the commands, or another rollout wave goes out (SPEC §4.3)."""
    conn.execute(
        update(executions)
        .where(
            executions.c.exec_id == exec_id,
            or_(executions.c.deadline_at.is_(None), executions.c.deadline_at < deadline),
        )
        .values(deadline_at=deadline)
    )


def end_exec(conn: Connection, exec_id: str, now: datetime) -> bool:
    """Its deadline passed and no expected pc is left waiting: the exec has ended, a fact
    its status is derived from (a live one completes, also one that expected nobody).
    True if its status moved."""
    before = _status_of(conn, exec_id)
    if before is None:
        return False
    mark_ended(conn, exec_id, now)
    refresh_exec_counters(conn, [exec_id], now)
    return _status_of(conn, exec_id) != before


def mark_ended(conn: Connection, exec_id: str, now: datetime) -> None:
    """The exec has ended for good (every expected pc accounted for, none can start any
    more): the reaper's closing pass need not look at it again."""
    conn.execute(
        update(executions)
        .where(executions.c.exec_id == exec_id, executions.c.ended_at.is_(None))
        .values(ended_at=now)
    )
