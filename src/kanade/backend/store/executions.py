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
from kanade.core.execstatus import DECISIONS, derive_status
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
        set_={c: stmt.excluded[c] for c in _EXEC_RECORD_COLUMNS},
    )
    conn.execute(stmt, full)
    # Results may have been projected before the record (replay order, or a slow API
    # write): count them now.
    refresh_exec_counters(conn, [str(r["exec_id"]) for r in rows], now)


def refresh_exec_counters(conn: Connection, exec_ids: Iterable[str], now: datetime) -> None:
    """Recompute counters of ``exec_ids`` from their results rows and derive their status.

    Counting (instead of incrementing) is what makes redelivery harmless. ``finished``
    includes reaped rows — a reaped pc will not report any more, so it must not hold the
    exec open; it also counts as failed. Skipped results are finished, not failed.
    """
    ids = sorted(set(exec_ids))
    if not ids:
        return
    done = results.c.state.in_(("finished", "reaped"))
    failed = or_(
        results.c.state == "reaped",
        and_(
            results.c.state == "finished",
            results.c.skipped == false(),
            results.c.exit_code != 0,
        ),
    )
    skipped = and_(results.c.state == "finished", results.c.skipped == true())
    counts: dict[str, tuple[int, int, int, int]] = {}
    current: dict[str, tuple[str, str, int]] = {}
    decided: dict[str, dict[str, datetime | None]] = {}
    for chunk in chunks(ids):
        q = (
            select(
                results.c.exec_id,
                func.count(),
                func.sum(case((done, 1), else_=0)),
                func.sum(case((failed, 1), else_=0)),
                func.sum(case((skipped, 1), else_=0)),
            )
            .where(results.c.exec_id.in_(chunk))
            .group_by(results.c.exec_id)
        )
        for exec_id, n_started, n_finished, n_failed, n_skipped in conn.execute(q):
            counts[exec_id] = (int(n_started), int(n_finished), int(n_failed), int(n_skipped))
        q2 = select(
            executions.c.exec_id,
            executions.c.status,
            executions.c.created_status,
            executions.c.expected_count,
        ).where(executions.c.exec_id.in_(chunk))
        for exec_id, status, created, expected in conn.execute(q2):
            current[exec_id] = (status, created or status, expected)
        q3 = select(exec_decisions.c.exec_id, exec_decisions.c.status, exec_decisions.c.at).where(
            exec_decisions.c.exec_id.in_(chunk)
        )
        for exec_id, status, at in conn.execute(q3):
            decided.setdefault(exec_id, {})[str(status)] = at

    updates = []
    for exec_id, (_status, created, expected) in current.items():
        n_started, n_finished, n_failed, n_skipped = counts.get(exec_id, (0, 0, 0, 0))
        updates.append(
            {
                "b_exec_id": exec_id,
                "b_status": derive_status(
                    created,
                    decided.get(exec_id, {}),
                    started=n_started,
                    finished=n_finished,
                    expected=expected,
                ).value,
                "b_started": n_started,
                "b_finished": n_finished,
                "b_failed": n_failed,
                "b_skipped": n_skipped,
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
