"""Approvals and unattended runs as operators use them (SPEC §4.8).

An exec of a job with ``require_approval: true`` is created ``awaiting_approval``: its
exec record and row exist, its command (or its rollout) is stored in ``approvals``, and
nothing is published. Then exactly one of:

* **approve** by a *different* operator (the requester → Forbidden; a viewer never gets
  here, the role table stops them): the catalog must still hold the requested version (else
  Conflict — approve what was asked, nothing else), the version is pinned, the command is
  re-stamped (``issued_at``/``deadline_at`` from the approval time) and its exact bytes are
  stored, then published (a rollout starts instead: its first wave is due its delay after
  the approval). Claim → publish → mark, like rollout waves: a crash in between is
  re-published by :mod:`kanade.backend.workers.approvals` with the stored bytes and
  deterministic msg ids, never run twice;
* **reject** (any operator, the requester included — withdrawing a request is harmless)
  with a reason;
* **expiry**: ``approval_ttl`` (default 24 h) after the request, the sweeper turns it
  ``rejected`` with reason ``expired`` (:func:`kanade.core.approvals.is_expired`).

With auth disabled everybody is ``anonymous`` and "a different operator" cannot exist;
the requester may then approve (logged and audited as ``self_approved``).

Unattended runs: ``unattended_approvals`` lists job versions an operator approved for
schedules (:func:`kanade.backend.store.approvals.unattended_approved` is what the central
scheduler asks before firing a ``require_approval`` job).

Every step is audited with its actor (``exec`` at request, ``approve``, ``reject``,
``approval_expired``, ``approve_unattended``, ``revoke_unattended``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from kanade.backend.catalog import pins
from kanade.backend.catalog.jobs import JobCatalog
from kanade.backend.errors import Conflict, Forbidden, NotFound
from kanade.backend.messaging.exec_events import (
    publish_audit_once,
    publish_exact,
    publish_exec_status,
)
from kanade.backend.store import approvals as store
from kanade.backend.store.database import Database
from kanade.bus.connection import Bus
from kanade.core.approvals import is_expired, may_approve, restamp
from kanade.core.dispatch import command_deadline
from kanade.core.models.wire import Command, decode, encode
from kanade.core.msgids import audit_msg_id
from kanade.core.statuses import ApprovalState, ExecStatus

log = structlog.get_logger(__name__)


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
    """Approve, reject, and approve or revoke unattended runs (the sweeper is a worker)."""

    def __init__(
        self,
        db: Database,
        bus: Callable[[], Bus],
        *,
        auth_enabled: bool,
        clock: Callable[[], datetime],
        on_rollout_started: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._bus = bus
        self._auth_enabled = auth_enabled
        self._clock = clock
        self._on_rollout_started = on_rollout_started

    # --- reads ------------------------------------------------------------------------------
    async def list_approvals(self, *, state: str | None, limit: int, offset: int) -> dict[str, Any]:
        page: dict[str, Any] = await self._db.read(
            lambda conn: store.list_approvals(conn, state=state, limit=limit, offset=offset)
        )
        return page

    async def get_approval(self, exec_id: str) -> dict[str, Any]:
        row = await self._db.read(lambda conn: store.get_approval(conn, exec_id))
        if row is None:
            raise NotFound(f"no approval request for execution {exec_id!r}", exec_id=exec_id)
        return row

    async def list_unattended(self, job_id: str | None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = await self._db.read(
            lambda conn: store.list_unattended(conn, job_id)
        )
        return items

    async def _load(self, exec_id: str) -> dict[str, Any]:
        row = await self._db.read(lambda conn: store.load(conn, exec_id))
        if row is None:
            raise NotFound(
                f"no approval request for execution {exec_id!r} (only execs of jobs with "
                "require_approval wait for one)",
                exec_id=exec_id,
            )
        return row

    # --- approve / reject -------------------------------------------------------------------
    async def approve(self, exec_id: str, actor: str) -> Decided:
        now = self._clock()
        row = await self._load(exec_id)
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
        await pins.pin_version(bus, job)
        raw = None if row["rollout"] else self._stamped(row, now)
        # The exec's deadline is its command's, now that it goes out (a rollout's waves
        # set it as each is sent).
        deadline = None if raw is None else command_deadline(decode(Command, raw.encode()))
        won = await self._db.write(
            lambda conn: store.decide(
                conn,
                exec_id,
                state=ApprovalState.APPROVED,
                actor=actor,
                reason=None,
                now=now,
                command=raw,
                deadline_at=deadline,
            )
        )
        if not won:
            fresh = await self._load(exec_id)
            self._check_pending(fresh, now)  # raises with the real reason
            raise Conflict(f"execution {exec_id!r} was decided concurrently", exec_id=exec_id)
        # Before the commands: a rebuilt database replays the decision (§4.2).
        await publish_exec_status(bus, exec_id, ExecStatus.PENDING, actor, now, deadline)
        dispatched = False
        if row["rollout"]:
            if self._on_rollout_started is not None:
                self._on_rollout_started()
        else:
            assert raw is not None
            await self._publish(bus, exec_id, raw, list(row["subjects"]))
            dispatched = True
        self_approved = actor == row["requested_by"]
        await publish_audit_once(
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
            audit_msg_id("approve", exec_id),
            now,
        )
        log.info("execution approved", exec_id=exec_id, actor=actor, rollout=bool(row["rollout"]))
        return Decided(exec_id, ApprovalState.APPROVED, bool(row["rollout"]), dispatched)

    async def reject(self, exec_id: str, actor: str, reason: str | None) -> Decided:
        now = self._clock()
        row = await self._load(exec_id)
        self._check_pending(row, now)
        text = reason or "rejected"
        won = await self._db.write(
            lambda conn: store.decide(
                conn, exec_id, state=ApprovalState.REJECTED, actor=actor, reason=text, now=now
            )
        )
        if not won:
            fresh = await self._load(exec_id)
            self._check_pending(fresh, now)
            raise Conflict(f"execution {exec_id!r} was decided concurrently", exec_id=exec_id)
        await publish_exec_status(self._bus(), exec_id, ExecStatus.REJECTED, actor, now)
        await publish_audit_once(
            self._bus(),
            "reject",
            actor,
            {
                "exec_id": exec_id,
                "job_id": row["job_id"],
                "version": row["version"],
                "reason": text,
            },
            audit_msg_id("reject", exec_id),
            now,
        )
        log.info("execution rejected", exec_id=exec_id, actor=actor, reason=text)
        return Decided(exec_id, ApprovalState.REJECTED, bool(row["rollout"]), False)

    def _check_pending(self, row: dict[str, Any], now: datetime) -> None:
        exec_id = row["exec_id"]
        if row["state"] != ApprovalState.PENDING:
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
                state=ApprovalState.EXPIRED,
            )

    @staticmethod
    def _stamped(row: dict[str, Any], now: datetime) -> str:
        """The requested command, issued now (its start deadline counts from approval)."""
        cmd = decode(Command, str(row["command"]).encode())
        return encode(restamp(cmd, now, row["starting_deadline_s"])).decode()

    async def _publish(self, bus: Bus, exec_id: str, raw: str, subs: list[str]) -> None:
        cmd = decode(Command, raw.encode())
        await publish_exact(bus, raw.encode(), cmd.request_id, subs)
        sent_at = self._clock()
        await self._db.write(lambda conn: store.mark_dispatched(conn, exec_id, sent_at))

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
        out = await self._db.write(
            lambda conn: store.add_unattended(conn, job_id, version, actor, now)
        )
        await publish_audit_once(
            self._bus(),
            "approve_unattended",
            actor,
            {"job_id": job_id, "version": version, "created": out["created"]},
            audit_msg_id("approve_unattended", job_id, version, now),
            now,
        )
        return out

    async def revoke_unattended(self, job_id: str, version: str, actor: str) -> bool:
        now = self._clock()
        gone = await self._db.write(lambda conn: store.remove_unattended(conn, job_id, version))
        if not gone:
            raise NotFound(
                f"job {job_id!r} version {version!r} is not approved for unattended runs",
                job_id=job_id,
                version=version,
            )
        await publish_audit_once(
            self._bus(),
            "revoke_unattended",
            actor,
            {"job_id": job_id, "version": version},
            audit_msg_id("revoke_unattended", job_id, version, now),
            now,
        )
        return True


# Moved to kanade.backend.store.approvals: re-exported only until
# the scheduler (workers/scheduler/engine.py) imports it from there.
