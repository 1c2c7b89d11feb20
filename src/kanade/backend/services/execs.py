"""The exec service (SPEC §4.1): dispatch a job or an ad-hoc script to a target.

Order matters and is deliberate:

1. validate, then pin the job's version in KV ``kanade_pins`` *before* any
   command exists, so an agent that sees the command also sees the pin;
2. resolve the expected pcs: alive agents matching the target (groups from their
   heartbeats) plus explicitly listed pcs (those may be offline: the command waits
   for them in the stream);
3. publish the exec record to KANADE_EXECS (the durable truth) and upsert the
   ``executions`` row (the API's read-your-own-write), both BEFORE the commands,
   so no result can arrive for an exec the database has never heard of;
4. publish one command message per address subject;
5. publish an audit record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import ValidationError

from kanade.backend.catalog import pins
from kanade.backend.catalog.jobs import JobCatalog
from kanade.backend.catalog.limits import (
    COMMAND_BYTES,
    EXEC_RECORD_BYTES,
    USE_GROUPS,
    USE_SCRIPT_OBJECT,
    require_fits,
)
from kanade.backend.errors import Conflict, Invalid
from kanade.backend.messaging.exec_events import publish_all
from kanade.backend.messaging.outgoing import audit_message, command_messages, record_message
from kanade.backend.services.known import KnownNames
from kanade.backend.store import agents, executions
from kanade.backend.store import approvals as approval_store
from kanade.backend.store import rollouts as rollout_store
from kanade.backend.store.database import Database
from kanade.bus import kvcas
from kanade.bus.connection import Bus
from kanade.bus.publish import publish_one
from kanade.core import subjects
from kanade.core.approvals import DEFAULT_TTL
from kanade.core.dispatch import Budgets, adhoc_job, build_command, command_deadline
from kanade.core.ids import new_id
from kanade.core.instants import Clock, system_clock
from kanade.core.models.job import JobManifest
from kanade.core.models.records import ExecKind, ExecRecord
from kanade.core.models.target import Target
from kanade.core.models.waves import Rollout
from kanade.core.models.wire import Command, Shell, encode
from kanade.core.statuses import ExecStatus
from kanade.core.targeting import command_subjects, expected_pcs
from kanade.core.validation import field_errors

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ExecCreated:
    exec_id: str
    kind: ExecKind
    job_id: str
    version: str
    request_id: str
    expected_pcs: list[str]
    subjects: list[str]
    # awaiting_approval for a require_approval job; rollout_id when sent in waves.
    status: str = ExecStatus.PENDING
    rollout_id: str | None = None
    # The script timeout, and the exec's deadline (no pc starts after it; None until its
    # commands go out, for a rollout or an exec awaiting approval).
    timeout_s: float | None = None
    deadline_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "exec_id": self.exec_id,
            "kind": self.kind,
            "job_id": self.job_id,
            "version": self.version,
            "expected_count": len(self.expected_pcs),
            "expected_pcs": self.expected_pcs,
            "status": self.status,
            "rollout_id": self.rollout_id,
            "timeout_s": self.timeout_s,
            "deadline_at": self.deadline_at,
        }


class ExecService:
    def __init__(
        self,
        db: Database,
        bus: Callable[[], Bus],
        *,
        budgets: Budgets | None = None,
        clock: Clock = system_clock,
        approval_ttl: timedelta = DEFAULT_TTL,
    ) -> None:
        self._db = db
        self._bus = bus  # a getter: raises Unavailable while the broker is away
        self.budgets = budgets or Budgets()
        self._clock = clock
        self._approval_ttl = approval_ttl
        self._known = KnownNames(db, bus, clock=clock)

    async def exec_job(
        self,
        job_id: str,
        target: Target,
        *,
        jitter: timedelta | None = None,
        starting_deadline: timedelta | None = None,
        actor: str = "anonymous",
        rollout: Rollout | None = None,
        urgent: bool = False,
        force: bool = False,
    ) -> ExecCreated:
        """An exec of a catalog job. Refused before anything is pinned or sent: a revoked
        job, and (unless ``force``) a target or rollout naming a pc or group nothing
        knows (:mod:`kanade.backend.services.known`)."""
        bus = self._bus()
        job = await JobCatalog(bus).require(job_id)
        await _refuse_revoked(bus, job_id)
        await self._known.check_target(target, rollout=rollout, force=force)
        script_sha256 = await self._script_sha256(bus, job)
        # A require_approval job waits in awaiting_approval (SPEC §4.8); it is pinned when
        # approved (kanade.backend.services.approvals), not before.
        if not job.require_approval:
            await pins.pin_version(bus, job)
        return await self._dispatch(
            bus,
            job,
            kind="job",
            exec_id=new_id(),
            target=target,
            jitter=jitter,
            starting_deadline=starting_deadline,
            actor=actor,
            script_sha256=script_sha256,
            rollout=rollout,
            urgent=urgent,
            awaiting_approval=job.require_approval,
        )

    async def run_adhoc(
        self,
        script: str,
        target: Target,
        *,
        shell: Shell = "sh",
        timeout: timedelta,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        actor: str = "anonymous",
        starting_deadline: timedelta | None = None,
        force: bool = False,
    ) -> ExecCreated:
        """An exec of a one-off job. Unless ``force``, refused when the target names a pc or
        group nothing knows, or when nobody alive matches it (:class:`Conflict`: the
        caller waits for results that would never come; forced, the command waits in the
        stream for targeted agents that come back)."""
        bus = self._bus()
        exec_id = new_id()
        try:
            job = adhoc_job(script, shell=shell, timeout=timeout, exec_id=exec_id, env=env, cwd=cwd)
        except ValidationError as exc:
            errors = [{"path": e.path, "reason": e.reason} for e in field_errors(exc)]
            raise Invalid("invalid script run", errors=errors) from None
        # No pin: an ad-hoc id is unique to this exec, there is no other version.
        return await self._dispatch(
            bus,
            job,
            kind="adhoc",
            exec_id=exec_id,
            target=target,
            jitter=None,
            starting_deadline=starting_deadline,
            actor=actor,
            script_sha256=None,
            refuse_empty=not force,
            check_names=not force,
        )

    async def _script_sha256(self, bus: Bus, job: JobManifest) -> str | None:
        try:
            return await pins.script_digest(bus, job)
        except pins.ScriptObjectMissing as exc:
            raise Invalid.at(
                "execute.script_object", str(exc), message=f"job {job.id!r} cannot be dispatched"
            ) from None
        except pins.ScriptObjectUnusable as exc:
            raise Conflict(str(exc)) from None

    async def _dispatch(
        self,
        bus: Bus,
        job: JobManifest,
        *,
        kind: ExecKind,
        exec_id: str,
        target: Target,
        jitter: timedelta | None,
        starting_deadline: timedelta | None,
        actor: str,
        script_sha256: str | None,
        rollout: Rollout | None = None,
        urgent: bool = False,
        awaiting_approval: bool = False,
        refuse_empty: bool = False,
        check_names: bool = False,
    ) -> ExecCreated:
        now = self._clock()
        request_id = new_id()
        alive = await self._db.read(lambda conn: agents.alive_agents(conn, now))
        pcs = expected_pcs(target, alive)
        command = build_command(
            job,
            exec_id=exec_id,
            request_id=request_id,
            address=target,
            issued_at=now,
            deadline_at=None if starting_deadline is None else now + starting_deadline,
            jitter_s=0.0 if jitter is None else jitter.total_seconds(),
            max_timeout_s=self.budgets.max_timeout_s,
            max_output_bytes=self.budgets.max_output_bytes,
            script_sha256=script_sha256,
        )
        if urgent:  # admins only (checked by the route): bypasses max_local_concurrent
            command = command.model_copy(update={"urgent": True})
        # Before anything exists: a message the broker refuses would leave a pending exec.
        require_fits("the command", len(encode(command)), COMMAND_BYTES, USE_SCRIPT_OBJECT)
        deferred = rollout is not None or awaiting_approval
        # The exec's deadline (SPEC §4.3) is its command's, once the command goes out: a
        # deferred one is stamped again when it does (the approval, each wave).
        deadline = None if deferred else command_deadline(command)
        record = ExecRecord(
            exec_id=exec_id,
            kind=kind,
            job_id=job.id,
            version=job.version,
            target=target.model_dump(mode="json", include={"all", "groups", "pcs"}),
            expected_pcs=pcs,
            expected_count=len(pcs),
            status=ExecStatus.AWAITING_APPROVAL if awaiting_approval else ExecStatus.PENDING,
            initiated_by=actor,
            created_at=now,
            request_id=request_id,
            inventory_hint=None
            if command.inventory is None
            else command.inventory.model_dump(mode="json"),
            check_hint=None if command.check is None else command.check.model_dump(mode="json"),
            deadline_at=deadline,
        )
        require_fits("the exec record", len(encode(record)), EXEC_RECORD_BYTES, USE_GROUPS)
        if check_names:  # after the size checks: a too-big request says so first
            await self._known.check_target(target)
        if refuse_empty and not pcs:
            raise Conflict(
                f"no alive agent matches the target ({target.describe()}); nothing was sent",
                target=target.describe(),
                overridable_by="force",
            )
        await publish_one(bus, record_message(record))
        subs = command_subjects(target, job.id)

        def store(conn: Any) -> None:
            executions.upsert_executions(conn, [record.row()], now)
            # Deferred dispatch: the waves (kanade.backend.workers.rollouts) and/or the approval
            # (kanade.backend.services.approvals) publish later, from what is stored here.
            if rollout is not None:
                rollout_store.create_rollout(
                    conn,
                    record=record,
                    command=command,
                    rollout=rollout,
                    groups_of=dict(alive),
                    starting_deadline_s=None
                    if starting_deadline is None
                    else starting_deadline.total_seconds(),
                    awaiting_approval=awaiting_approval,
                    now=now,
                )
            if awaiting_approval:
                approval_store.create_request(
                    conn,
                    record=record,
                    command=command,
                    subs=subs,
                    starting_deadline_s=None
                    if starting_deadline is None
                    else starting_deadline.total_seconds(),
                    rollout=rollout is not None,
                    ttl=self._approval_ttl,
                    now=now,
                )

        await self._db.write(store)
        if not deferred:
            # msg_id per subject: a retried publish is deduplicated by the broker; the
            # agent itself dedups by request_id across subjects.
            await publish_all(bus, command_messages(command, subs))
        log.info(
            "exec dispatched",
            exec_id=exec_id,
            job_id=job.id,
            version=job.version,
            kind=kind,
            target=target.describe(),
            expected=len(pcs),
            actor=actor,
        )
        await self._audit(bus, record, command)
        return ExecCreated(
            exec_id,
            kind,
            job.id,
            job.version,
            request_id,
            pcs,
            subs,
            status=record.status,
            rollout_id=exec_id if rollout is not None else None,
            timeout_s=command.timeout_s,
            deadline_at=deadline,
        )

    async def _audit(self, bus: Bus, record: ExecRecord, command: Command) -> None:
        try:
            await publish_one(bus, audit_message(record, command))
        except Exception:
            # The commands are out: failing the request now would invite a retry that
            # runs the job twice. Log loudly instead.
            log.exception("audit record not written", exec_id=record.exec_id)


async def _refuse_revoked(bus: Bus, job_id: str) -> None:
    """A revoked job is not dispatched: every agent would skip it (126) — say so now, with
    the way out, instead of sending a command that only produces skips."""
    kv = await bus.kv(subjects.KV_REVOCATIONS)
    current = await kvcas.read(kv, job_id)
    if current.value is None:
        return
    record = kvcas.json_or(current.value, {})
    reason = record.get("reason") if isinstance(record, dict) else None
    raise Conflict(
        f"job {job_id!r} is revoked{f' ({reason})' if reason else ''}: every agent would "
        f"skip it (exit 126); lift the revocation first with `kanade unrevoke {job_id}`",
        job_id=job_id,
        revoked=True,
    )
