"""The approval tables (``approvals``, ``unattended_approvals``; SPEC §4.8): requests, the
``pending → approved|rejected`` compare-and-set (which moves the exec and its rollout along),
expiry and re-drive queries, and the job versions approved for unattended runs.

These tables are operator decisions, not projections: every change is noted for its
document in KV ``kanade_state`` (:mod:`kanade.backend.store.state_outbox`), which a wiped
database is rebuilt from.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.engine import Connection

from kanade.backend.store import rollouts, unstarted
from kanade.backend.store.database import Database
from kanade.backend.store.executions import extend_deadline, set_exec_status
from kanade.backend.store.state_outbox import touch
from kanade.backend.store.tables import approvals, executions, unattended_approvals
from kanade.core.approvals import approval_expires_at
from kanade.core.models.records import ExecRecord
from kanade.core.models.wire import Command, encode
from kanade.core.statuses import APPROVAL_TRANSITIONS, ApprovalState, ExecStatus, sources

# --- creation (called by the exec service inside its transaction) ----------------------------


def create_request(
    conn: Connection,
    *,
    record: ExecRecord,
    command: Command,
    subs: list[str],
    starting_deadline_s: float | None,
    rollout: bool,
    ttl: timedelta,
    now: datetime,
) -> datetime:
    """Store what would be sent; returns when the request expires. Insert-if-absent."""
    expires_at = approval_expires_at(now, ttl)
    exists = conn.execute(
        select(approvals.c.exec_id).where(approvals.c.exec_id == record.exec_id)
    ).first()
    if exists is None:
        conn.execute(
            approvals.insert().values(
                exec_id=record.exec_id,
                job_id=record.job_id,
                version=record.version,
                state=ApprovalState.PENDING,
                requested_by=record.initiated_by,
                requested_at=now,
                expires_at=expires_at,
                command=encode(command).decode(),
                subjects=[] if rollout else subs,
                starting_deadline_s=starting_deadline_s,
                rollout=rollout,
            )
        )
        touch(conn, "approval", record.exec_id)
    return expires_at


# --- reads ------------------------------------------------------------------------------------

_VIEW = (
    "exec_id", "job_id", "version", "state", "requested_by", "requested_at", "expires_at",
    "decided_by", "decided_at", "reason", "rollout", "dispatched_at",
)  # fmt: skip


def _view(row: Any) -> dict[str, Any]:
    return {k: row[k] for k in _VIEW}


def get_approval(conn: Connection, exec_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(approvals).where(approvals.c.exec_id == exec_id)).mappings().first()
    return None if row is None else _view(row)


def load(conn: Connection, exec_id: str) -> dict[str, Any] | None:
    """The whole request row (with the stored command), or None."""
    row = conn.execute(select(approvals).where(approvals.c.exec_id == exec_id)).mappings().first()
    return None if row is None else dict(row)


def list_approvals(
    conn: Connection, *, state: str | None, limit: int, offset: int
) -> dict[str, Any]:
    q = select(approvals)
    if state is not None:
        q = q.where(approvals.c.state == state)
    total = len(conn.execute(q.with_only_columns(approvals.c.exec_id)).all())
    rows = conn.execute(
        q.order_by(approvals.c.requested_at.desc()).limit(limit).offset(offset)
    ).mappings()
    return {"items": [_view(r) for r in rows], "total": total, "limit": limit, "offset": offset}


def unattended_ok(conn: Connection, job_id: str, version: str) -> bool:
    """Whether schedules may fire ``job_id`` at ``version`` although it requires approval."""
    return (
        conn.execute(
            select(unattended_approvals.c.job_id).where(
                unattended_approvals.c.job_id == job_id, unattended_approvals.c.version == version
            )
        ).first()
        is not None
    )


async def unattended_approved(db: Database, jobs: list[tuple[str, str]]) -> set[str]:
    """The job ids among ``(job_id, version)`` pairs approved for unattended runs (one
    read for a whole scheduler tick)."""
    if not jobs:
        return set()
    return await db.read(
        lambda conn: {job_id for job_id, version in jobs if unattended_ok(conn, job_id, version)}
    )


def list_unattended(conn: Connection, job_id: str | None = None) -> list[dict[str, Any]]:
    q = select(unattended_approvals)
    if job_id is not None:
        q = q.where(unattended_approvals.c.job_id == job_id)
    q = q.order_by(unattended_approvals.c.job_id, unattended_approvals.c.version)
    return [dict(r) for r in conn.execute(q).mappings()]


def add_unattended(
    conn: Connection, job_id: str, version: str, actor: str, now: datetime
) -> dict[str, Any]:
    """Approve ``job_id`` at ``version`` for unattended runs (insert-if-absent); the row,
    with ``created`` False when it was approved already."""
    existing = (
        conn.execute(
            select(unattended_approvals).where(
                unattended_approvals.c.job_id == job_id,
                unattended_approvals.c.version == version,
            )
        )
        .mappings()
        .first()
    )
    if existing is not None:
        return {**dict(existing), "created": False}
    row = {"job_id": job_id, "version": version, "approved_by": actor, "approved_at": now}
    conn.execute(unattended_approvals.insert().values(**row))
    touch(conn, "unattended", job_id, version)
    return {**row, "created": True}


def remove_unattended(conn: Connection, job_id: str, version: str) -> bool:
    """Withdraw an unattended approval; False when there was none."""
    res = conn.execute(
        delete(unattended_approvals).where(
            unattended_approvals.c.job_id == job_id,
            unattended_approvals.c.version == version,
        )
    )
    if res.rowcount > 0:
        touch(conn, "unattended", job_id, version)
        return True
    return False


# --- state changes ----------------------------------------------------------------------------


def decide(
    conn: Connection,
    exec_id: str,
    *,
    state: str,
    actor: str,
    reason: str | None,
    now: datetime,
    command: str | None = None,
    deadline_at: datetime | None = None,
    require_unexpired: bool = True,
) -> bool:
    """Compare-and-set ``pending → state`` and move the exec (and its rollout) along.

    Approved with the stamped ``command``: ``deadline_at`` is its deadline, now the exec's.
    Rejected (or expired): its expected pcs, never to be sent anything, are closed as
    ``no_result`` at once (SPEC §4.3)."""
    cond = [
        approvals.c.exec_id == exec_id,
        approvals.c.state.in_(sources(APPROVAL_TRANSITIONS, ApprovalState(state))),
    ]
    if require_unexpired:
        cond.append(approvals.c.expires_at > now)
    values: dict[str, Any] = {
        "state": state,
        "decided_by": actor,
        "decided_at": now,
        "reason": reason,
    }
    if command is not None:
        values["command"] = command
    if conn.execute(update(approvals).where(and_(*cond)).values(**values)).rowcount != 1:
        return False
    touch(conn, "approval", exec_id)
    if state == ApprovalState.APPROVED:
        set_exec_status(conn, exec_id, ExecStatus.PENDING, now, by=actor)
        if deadline_at is not None:
            extend_deadline(conn, exec_id, deadline_at)
        rollouts.start_approved(conn, exec_id, now)
    else:
        set_exec_status(conn, exec_id, ExecStatus.REJECTED, now, by=actor)
        rollouts.reject_pending(conn, exec_id, reason or "rejected", now)
        unstarted.close_exec(conn, exec_id, now)
    return True


def mark_dispatched(conn: Connection, exec_id: str, now: datetime) -> None:
    """Every command of an approved exec was acked (the first time only)."""
    res = conn.execute(
        update(approvals)
        .where(approvals.c.exec_id == exec_id, approvals.c.dispatched_at.is_(None))
        .values(dispatched_at=now)
    )
    if res.rowcount:
        touch(conn, "approval", exec_id)


def expire_due(
    conn: Connection, now: datetime, *, actor: str, reason: str
) -> list[tuple[str, str, str]]:
    """Reject every pending request whose time is up; (exec_id, job_id, version) of each."""
    due = conn.execute(
        select(approvals.c.exec_id, approvals.c.job_id, approvals.c.version).where(
            approvals.c.state == ApprovalState.PENDING, approvals.c.expires_at <= now
        )
    ).all()
    out = []
    for exec_id, job_id, version in due:
        if decide(
            conn,
            str(exec_id),
            state=ApprovalState.REJECTED,
            actor=actor,
            reason=reason,
            now=now,
            require_unexpired=False,
        ):
            out.append((str(exec_id), str(job_id), str(version)))
    return out


def reject_orphans(conn: Connection, now: datetime, *, older_than: timedelta) -> None:
    """Execs waiting for an approval row that does not exist (a rebuilt database): nobody can
    approve them, so they are rejected. Only older ones: the exec service writes both rows in
    one transaction, but the projector may insert the exec row from the stream a moment
    before that transaction commits."""
    orphans = conn.execute(
        select(executions.c.exec_id)
        .outerjoin(approvals, approvals.c.exec_id == executions.c.exec_id)
        .where(
            executions.c.status == ExecStatus.AWAITING_APPROVAL,
            executions.c.created_at <= now - older_than,
            approvals.c.exec_id.is_(None),
        )
        .limit(500)
    ).all()
    for (exec_id,) in orphans:
        set_exec_status(conn, str(exec_id), ExecStatus.REJECTED, now)
        unstarted.close_exec(conn, str(exec_id), now)


def undispatched(conn: Connection, decided_before: datetime) -> list[dict[str, Any]]:
    """Approved direct execs (no rollout) whose commands were never marked sent — a dispatch
    cut short — decided before ``decided_before``."""
    return [
        dict(r)
        for r in conn.execute(
            select(approvals).where(
                approvals.c.state == ApprovalState.APPROVED,
                approvals.c.rollout.is_(False),
                approvals.c.dispatched_at.is_(None),
                approvals.c.decided_at <= decided_before,
            )
        ).mappings()
    ]
