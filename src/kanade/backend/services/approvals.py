"""Approvals and unattended runs (SPEC §4.8).

An exec of a job with ``require_approval: true`` is created ``awaiting_approval``: its
exec record and row exist, its command (or its rollout) is stored in ``approvals``, and
nothing is published. Then exactly one of:

* **approve** by a *different* operator (the requester → 403; a viewer never gets here,
  the role table stops them): the catalog must still hold the requested version (else
  409 — approve what was asked, nothing else), the version is pinned, the command is
  re-stamped (``issued_at``/``deadline_at`` from the approval time) and its exact bytes are
  stored, then published (a rollout starts instead: its first wave is due its delay after
  the approval). Claim → publish → mark, like rollout waves: a crash in between is
  re-published with the stored bytes and deterministic msg ids, never run twice;
* **reject** (any operator, the requester included — withdrawing a request is harmless)
  with a reason;
* **expiry**: ``approval_ttl`` (default 24 h) after the request, the sweeper turns it
  ``rejected`` with reason ``expired`` (:func:`is_expired` is the pure rule).

With auth disabled everybody is ``anonymous`` and "a different operator" cannot exist;
the requester may then approve (logged and audited as ``self_approved``).

Unattended runs: ``unattended_approvals`` lists job versions an operator approved for
schedules. :func:`unattended_ok` is what the central scheduler asks before firing a
``require_approval`` job; without it the fire is skipped with the reason.

Every step is audited with its actor (``exec`` at request, ``approve``, ``reject``,
``approval_expired``, ``approve_unattended``, ``revoke_unattended``).

These tables are operator decisions, not projections: a wiped database forgets them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy import and_, delete, select, update
from sqlalchemy.engine import Connection

from kanade.backend.catalog.jobs import JobCatalog
from kanade.backend.errors import Conflict, Forbidden, NotFound
from kanade.backend.messaging.records import ExecRecord
from kanade.backend.services import rollouts
from kanade.backend.store.database import Database
from kanade.backend.store.tables import approvals, executions, unattended_approvals
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.models.wire import Command, decode, encode

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]

DEFAULT_TTL: Final = timedelta(hours=24)
DEFAULT_SWEEP_S: Final = 5.0
REDISPATCH_AFTER: Final = timedelta(seconds=10)
ORPHAN_AFTER: Final = timedelta(minutes=1)
SYSTEM_ACTOR: Final = "system:approvals"
EXPIRED_REASON: Final = "expired"


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- pure rules -------------------------------------------------------------------------------


def approval_expires_at(requested_at: datetime, ttl: timedelta) -> datetime:
    return requested_at + ttl


def is_expired(expires_at: datetime, now: datetime) -> bool:
    """Inclusive: at exactly ``expires_at`` the request can no longer be approved."""
    return now >= expires_at


def may_approve(requester: str, approver: str, *, auth_enabled: bool) -> bool:
    """Two-person rule: the approver differs from the requester (unless nobody has an
    identity because auth is disabled)."""
    return approver != requester or not auth_enabled


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
                state="pending",
                requested_by=record.initiated_by,
                requested_at=now,
                expires_at=expires_at,
                command=encode(command).decode(),
                subjects=[] if rollout else subs,
                starting_deadline_s=starting_deadline_s,
                rollout=rollout,
            )
        )
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


# --- state changes ----------------------------------------------------------------------------


def _decide(
    conn: Connection,
    exec_id: str,
    *,
    state: str,
    actor: str,
    reason: str | None,
    now: datetime,
    command: str | None = None,
    require_unexpired: bool = True,
) -> bool:
    """Compare-and-set ``pending → state`` and move the exec (and its rollout) along."""
    cond = [approvals.c.exec_id == exec_id, approvals.c.state == "pending"]
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
    if state == "approved":
        rollouts.set_exec_status(conn, exec_id, "pending", now)
        rollouts.start_approved(conn, exec_id, now)
    else:
        rollouts.set_exec_status(conn, exec_id, "rejected", now)
        rollouts.reject_pending(conn, exec_id, reason or "rejected", now)
    return True


def _load(conn: Connection, exec_id: str) -> dict[str, Any]:
    row = conn.execute(select(approvals).where(approvals.c.exec_id == exec_id)).mappings().first()
    if row is None:
        raise NotFound(
            f"no approval request for execution {exec_id!r} (only execs of jobs with "
            "require_approval wait for one)",
            exec_id=exec_id,
        )
    return dict(row)


@dataclass(frozen=True)
class Decided:
    exec_id: str
    state: str
    rollout: bool
    dispatched: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "exec_id": self.exec_id,
            "state": self.state,
            "rollout": self.rollout,
            "dispatched": self.dispatched,
        }


class ApprovalService:
    def __init__(
        self,
        db: Database,
        bus: Callable[[], Bus],
        *,
        auth_enabled: bool,
        clock: Clock = utcnow,
        sweep_s: float = DEFAULT_SWEEP_S,
        on_rollout_started: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._bus = bus
        self._auth_enabled = auth_enabled
        self._clock = clock
        self._sweep_s = sweep_s
        self._on_rollout_started = on_rollout_started

    # --- approve / reject -------------------------------------------------------------------
    async def approve(self, exec_id: str, actor: str) -> Decided:
        now = self._clock()
        row = await self._db.read(lambda conn: _load(conn, exec_id))
        self._check_pending(row, now)
        if not may_approve(row["requested_by"], actor, auth_enabled=self._auth_enabled):
            raise Forbidden(
                f"{actor} requested execution {exec_id!r} and cannot approve it: "
                "a different operator must",
                exec_id=exec_id,
            )
        bus = self._bus()
        job = await JobCatalog(bus).get(row["job_id"])
        if job is None:
            raise Conflict(
                f"job {row['job_id']!r} is no longer in the catalog; reject this request",
                exec_id=exec_id,
            )
        if job.version != row["version"]:
            raise Conflict(
                f"job {row['job_id']!r} changed since the request (requested version "
                f"{row['version']!r}, catalog has {job.version!r}); reject it and request "
                "the new version",
                exec_id=exec_id,
            )
        # Pin before any command can exist (SPEC §4.1), exactly as a direct exec does.
        pins = await bus.kv(subjects.KV_PINS)
        await pins.put(job.id, job.version.encode())
        raw = None if row["rollout"] else self._stamped(row, now)
        won = await self._db.write(
            lambda conn: _decide(
                conn, exec_id, state="approved", actor=actor, reason=None, now=now, command=raw
            )
        )
        if not won:
            fresh = await self._db.read(lambda conn: _load(conn, exec_id))
            self._check_pending(fresh, now)  # raises with the real reason
            raise Conflict(f"execution {exec_id!r} was decided concurrently", exec_id=exec_id)
        # Before the commands: a rebuilt database replays the decision (§4.2).
        await rollouts.publish_exec_status(bus, exec_id, "pending", actor, now)
        dispatched = False
        if row["rollout"]:
            if self._on_rollout_started is not None:
                self._on_rollout_started()
        else:
            assert raw is not None
            await self._publish(bus, exec_id, raw, list(row["subjects"]))
            dispatched = True
        self_approved = actor == row["requested_by"]
        await rollouts.publish_audit_once(
            bus,
            "approve",
            actor,
            {
                "exec_id": exec_id,
                "job_id": row["job_id"],
                "version": row["version"],
                "requested_by": row["requested_by"],
                "rollout": bool(row["rollout"]),
                **({"self_approved": True} if self_approved else {}),
            },
            f"audit:approve:{exec_id}",
            now,
        )
        log.info("execution approved", exec_id=exec_id, actor=actor, rollout=bool(row["rollout"]))
        return Decided(exec_id, "approved", bool(row["rollout"]), dispatched)

    async def reject(self, exec_id: str, actor: str, reason: str | None) -> Decided:
        now = self._clock()
        row = await self._db.read(lambda conn: _load(conn, exec_id))
        self._check_pending(row, now)
        text = reason or "rejected"
        won = await self._db.write(
            lambda conn: _decide(conn, exec_id, state="rejected", actor=actor, reason=text, now=now)
        )
        if not won:
            fresh = await self._db.read(lambda conn: _load(conn, exec_id))
            self._check_pending(fresh, now)
            raise Conflict(f"execution {exec_id!r} was decided concurrently", exec_id=exec_id)
        await rollouts.publish_exec_status(self._bus(), exec_id, "rejected", actor, now)
        await rollouts.publish_audit_once(
            self._bus(),
            "reject",
            actor,
            {
                "exec_id": exec_id,
                "job_id": row["job_id"],
                "version": row["version"],
                "reason": text,
            },
            f"audit:reject:{exec_id}",
            now,
        )
        log.info("execution rejected", exec_id=exec_id, actor=actor, reason=text)
        return Decided(exec_id, "rejected", bool(row["rollout"]), False)

    def _check_pending(self, row: dict[str, Any], now: datetime) -> None:
        exec_id = row["exec_id"]
        if row["state"] != "pending":
            why = f" ({row['reason']})" if row.get("reason") else ""
            raise Conflict(
                f"execution {exec_id!r} is already {row['state']}{why}",
                exec_id=exec_id,
                state=row["state"],
            )
        if is_expired(row["expires_at"], now):
            raise Conflict(
                f"the approval request for {exec_id!r} expired at "
                f"{row['expires_at'].isoformat()}; request the exec again",
                exec_id=exec_id,
                state="expired",
            )

    @staticmethod
    def _stamped(row: dict[str, Any], now: datetime) -> str:
        """The requested command, issued now (its start deadline counts from approval)."""
        cmd = decode(Command, str(row["command"]).encode())
        deadline_s = row["starting_deadline_s"]
        cmd = cmd.model_copy(
            update={
                "issued_at": now,
                "deadline_at": None if deadline_s is None else now + timedelta(seconds=deadline_s),
            }
        )
        return encode(cmd).decode()

    async def _publish(self, bus: Bus, exec_id: str, raw: str, subs: list[str]) -> None:
        cmd = decode(Command, raw.encode())
        await rollouts.publish_exact(bus, raw.encode(), cmd.request_id, subs)
        sent_at = self._clock()
        await self._db.write(
            lambda conn: conn.execute(
                update(approvals)
                .where(approvals.c.exec_id == exec_id, approvals.c.dispatched_at.is_(None))
                .values(dispatched_at=sent_at)
            )
        )

    # --- unattended runs --------------------------------------------------------------------
    async def approve_unattended(self, job_id: str, version: str, actor: str) -> dict[str, Any]:
        now = self._clock()
        job = await JobCatalog(self._bus()).require(job_id)
        if job.version != version:
            raise Conflict(
                f"job {job_id!r} is at version {job.version!r} in the catalog; only that "
                f"version can be approved for unattended runs (not {version!r})",
                job_id=job_id,
                version=version,
            )

        def work(conn: Connection) -> dict[str, Any]:
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
            return {**row, "created": True}

        out = await self._db.write(work)
        await rollouts.publish_audit_once(
            self._bus(),
            "approve_unattended",
            actor,
            {"job_id": job_id, "version": version, "created": out["created"]},
            f"audit:approve_unattended:{job_id}:{version}:{now.timestamp()}",
            now,
        )
        return out

    async def revoke_unattended(self, job_id: str, version: str, actor: str) -> bool:
        now = self._clock()
        gone = await self._db.write(
            lambda conn: (
                conn.execute(
                    delete(unattended_approvals).where(
                        unattended_approvals.c.job_id == job_id,
                        unattended_approvals.c.version == version,
                    )
                ).rowcount
                > 0
            )
        )
        if not gone:
            raise NotFound(
                f"job {job_id!r} version {version!r} is not approved for unattended runs",
                job_id=job_id,
                version=version,
            )
        await rollouts.publish_audit_once(
            self._bus(),
            "revoke_unattended",
            actor,
            {"job_id": job_id, "version": version},
            f"audit:revoke_unattended:{job_id}:{version}:{now.timestamp()}",
            now,
        )
        return True

    # --- the sweeper: expiry and interrupted dispatches ------------------------------------
    async def sweep(self) -> list[str]:
        """Expire due requests; re-publish approved commands whose dispatch was cut short.
        Returns the exec ids that expired."""
        now = self._clock()

        def expire(conn: Connection) -> list[tuple[str, str, str]]:
            due = conn.execute(
                select(approvals.c.exec_id, approvals.c.job_id, approvals.c.version).where(
                    approvals.c.state == "pending", approvals.c.expires_at <= now
                )
            ).all()
            out = []
            for exec_id, job_id, version in due:
                if _decide(
                    conn,
                    str(exec_id),
                    state="rejected",
                    actor=SYSTEM_ACTOR,
                    reason=EXPIRED_REASON,
                    now=now,
                    require_unexpired=False,
                ):
                    out.append((str(exec_id), str(job_id), str(version)))
            # Execs waiting for an approval row that does not exist (a rebuilt database):
            # nobody can approve them, so they are rejected. Only older ones: the exec
            # service writes both rows in one transaction, but the projector may insert
            # the exec row from the stream a moment before that transaction commits.
            orphans = conn.execute(
                select(executions.c.exec_id)
                .outerjoin(approvals, approvals.c.exec_id == executions.c.exec_id)
                .where(
                    executions.c.status == "awaiting_approval",
                    executions.c.created_at <= now - ORPHAN_AFTER,
                    approvals.c.exec_id.is_(None),
                )
                .limit(500)
            ).all()
            for (exec_id,) in orphans:
                rollouts.set_exec_status(conn, str(exec_id), "rejected", now)
            return out

        expired = await self._db.write(expire)
        if expired:
            bus = self._bus_or_none()
            for exec_id, job_id, version in expired:
                log.info("approval request expired", exec_id=exec_id)
                if bus is not None:
                    await rollouts.publish_exec_status(bus, exec_id, "rejected", SYSTEM_ACTOR, now)
                    await rollouts.publish_audit_once(
                        bus,
                        "approval_expired",
                        SYSTEM_ACTOR,
                        {"exec_id": exec_id, "job_id": job_id, "version": version},
                        f"audit:approval_expired:{exec_id}",
                        now,
                    )
        await self._redrive(now)
        return [e for e, _, _ in expired]

    async def _redrive(self, now: datetime) -> None:
        stale = now - REDISPATCH_AFTER
        rows = await self._db.read(
            lambda conn: [
                dict(r)
                for r in conn.execute(
                    select(approvals).where(
                        approvals.c.state == "approved",
                        approvals.c.rollout.is_(False),
                        approvals.c.dispatched_at.is_(None),
                        approvals.c.decided_at <= stale,
                    )
                ).mappings()
            ]
        )
        if not rows:
            return
        bus = self._bus()
        for row in rows:
            log.warning(
                "re-publishing an approved exec whose dispatch was interrupted",
                exec_id=row["exec_id"],
            )
            await self._publish(
                bus, str(row["exec_id"]), str(row["command"]), list(row["subjects"])
            )

    def _bus_or_none(self) -> Bus | None:
        try:
            return self._bus()
        except Exception:
            return None

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("approval sweep failed; retrying", error=str(exc))
            await asyncio.sleep(self._sweep_s)
