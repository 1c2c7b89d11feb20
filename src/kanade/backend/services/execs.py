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

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from nats.js.api import PubAck
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from kanade.backend.catalog.jobs import JobCatalog
from kanade.backend.messaging.records import AuditRecord, ExecKind, ExecRecord
from kanade.backend.services import approvals as approval_store
from kanade.backend.services import rollouts as rollout_store
from kanade.backend.services.errors import BadRequest, Conflict
from kanade.backend.store import reads, writes
from kanade.backend.store.database import Database
from kanade.bus.connection import MSG_ID_HEADER, Bus
from kanade.core import subjects
from kanade.core.digests import sha256_hex_from_nats_digest
from kanade.core.dispatch import adhoc_job, build_command
from kanade.core.fleet import alive_cutoff
from kanade.core.ids import new_id
from kanade.core.models.job import JobManifest
from kanade.core.models.schedule import Rollout
from kanade.core.models.target import Target
from kanade.core.models.wire import Command, Shell, encode
from kanade.core.validation import field_errors

log = structlog.get_logger(__name__)

# Concurrent command publishes (each waits for its JetStream ack): a target listing
# hundreds of pcs is published in a few round trips, not hundreds.
_PUBLISH_CONCURRENCY = 128


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
    status: str = "pending"
    rollout_id: str | None = None

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
        }


@dataclass(frozen=True)
class Budgets:
    """Caps applied to every command (SPEC §4.9)."""

    max_timeout_s: float | None = None
    max_output_bytes: int = 256 * 1024


def command_subjects(target: Target, job_id: str) -> list[str]:
    """One subject per address: ``all``, else each group and each pc (one message each)."""
    if target.all:
        return [subjects.command_subject("all", None, job_id)]
    return [subjects.command_subject("group", g, job_id) for g in target.groups] + [
        subjects.command_subject("pc", p, job_id) for p in target.pcs
    ]


def expected_pcs(target: Target, alive: list[tuple[str, list[str]]]) -> list[str]:
    """Alive agents the target matches, plus every explicitly listed pc."""
    matched = {pc for pc, groups in alive if target.matches(pc, groups)}
    return sorted(matched | set(target.pcs))


def _sha256(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


class ExecService:
    def __init__(
        self,
        db: Database,
        bus: Callable[[], Bus],
        *,
        budgets: Budgets | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        approval_ttl: timedelta = approval_store.DEFAULT_TTL,
    ) -> None:
        self._db = db
        self._bus = bus  # a getter: raises BrokerUnavailable while the broker is away
        self._budgets = budgets or Budgets()
        self._clock = clock
        self._approval_ttl = approval_ttl

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
    ) -> ExecCreated:
        bus = self._bus()
        job = await JobCatalog(bus).require(job_id)
        script_sha256 = await self._script_sha256(bus, job)
        # A require_approval job waits in awaiting_approval (SPEC §4.8); it is pinned when
        # approved (kanade.backend.services.approvals), not before.
        if not job.require_approval:
            pins = await bus.kv(subjects.KV_PINS)
            await pins.put(job.id, job.version.encode())
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
    ) -> ExecCreated:
        bus = self._bus()
        exec_id = new_id()
        try:
            job = adhoc_job(script, shell=shell, timeout=timeout, exec_id=exec_id, env=env, cwd=cwd)
        except ValidationError as exc:
            errors = [{"path": e.path, "reason": e.reason} for e in field_errors(exc)]
            raise BadRequest("invalid script run", errors=errors) from None
        # No pin: an ad-hoc id is unique to this exec, there is no other version.
        return await self._dispatch(
            bus,
            job,
            kind="adhoc",
            exec_id=exec_id,
            target=target,
            jitter=None,
            starting_deadline=None,
            actor=actor,
            script_sha256=None,
        )

    async def _script_sha256(self, bus: Bus, job: JobManifest) -> str | None:
        name = job.execute.script_object
        if name is None:
            return None
        store = await bus.obj(subjects.OBJ_SCRIPTS)
        try:
            info = await store.get_info(name)
        except NotFoundError:
            raise BadRequest.at(
                "execute.script_object",
                f"{name!r} is not in the scripts object store; upload it first",
                message=f"job {job.id!r} cannot be dispatched",
            ) from None
        if not info.digest:
            raise Conflict(f"script object {name!r} has no digest; re-upload it")
        return sha256_hex_from_nats_digest(info.digest)

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
    ) -> ExecCreated:
        now = self._clock()
        request_id = new_id()
        alive = await self._db.read(lambda conn: reads.alive_agents(conn, alive_cutoff(now)))
        pcs = expected_pcs(target, alive)
        command = build_command(
            job,
            exec_id=exec_id,
            request_id=request_id,
            address=target,
            issued_at=now,
            deadline_at=None if starting_deadline is None else now + starting_deadline,
            jitter_s=0.0 if jitter is None else jitter.total_seconds(),
            max_timeout_s=self._budgets.max_timeout_s,
            max_output_bytes=self._budgets.max_output_bytes,
            script_sha256=script_sha256,
        )
        if urgent:  # admins only (checked by the route): bypasses max_local_concurrent
            command = command.model_copy(update={"urgent": True})
        record = ExecRecord(
            exec_id=exec_id,
            kind=kind,
            job_id=job.id,
            version=job.version,
            target=target.model_dump(mode="json", include={"all", "groups", "pcs"}),
            expected_pcs=pcs,
            expected_count=len(pcs),
            status="awaiting_approval" if awaiting_approval else "pending",
            initiated_by=actor,
            created_at=now,
            request_id=request_id,
            inventory_hint=None
            if command.inventory is None
            else command.inventory.model_dump(mode="json"),
            check_hint=None if command.check is None else command.check.model_dump(mode="json"),
        )
        await bus.publish_js(
            subjects.exec_subject("created", exec_id), encode(record), msg_id=f"exec:{exec_id}"
        )
        subs = command_subjects(target, job.id)
        deferred = rollout is not None or awaiting_approval

        def store(conn: Any) -> None:
            writes.upsert_executions(conn, [record.row()], now)
            # Deferred dispatch: the waves (kanade.backend.services.rollouts) and/or the approval
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
            await self._publish_commands(bus, command, subs)
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
        await self._audit(bus, record, command, now)
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
        )

    # --- the central scheduler's path (kanade.backend.workers.scheduler) -----------------------
    async def pin_for_schedule(self, bus: Bus, job: JobManifest) -> str | None:
        """Step 1 of :meth:`exec_job` for a scheduled fire: pin the job's version (before
        any command exists) and return its script digest (None for inline scripts)."""
        script_sha256 = await self._script_sha256(bus, job)
        pins = await bus.kv(subjects.KV_PINS)
        await pins.put(job.id, job.version.encode())
        return script_sha256

    # Steps 3-5 of _dispatch for an exec whose row the scheduler already claimed (insert-if-
    # absent on its occurrence-derived exec_id), as ready-made messages: the scheduler builds
    # them before a fire's nominal instant and publishes a tick's fires in phases (every
    # command, then every record, then every audit) through send_pipelined. Same
    # subjects and the same deterministic Nats-Msg-Ids as _dispatch: publishing one
    # occurrence again is dropped by the broker.
    @staticmethod
    def command_messages(command: Command, subs: list[str]) -> list[Outgoing]:
        payload = encode(command)  # encoded once for every address
        return [Outgoing(s, payload, f"{command.request_id}:{s}") for s in subs]

    @staticmethod
    def record_message(record: ExecRecord) -> Outgoing:
        return Outgoing(
            subjects.exec_subject("created", record.exec_id),
            encode(record),
            f"exec:{record.exec_id}",
        )

    @staticmethod
    def audit_message(record: ExecRecord, command: Command) -> Outgoing:
        return Outgoing(
            subjects.audit_subject("exec"),
            encode(_audit_record(record, command, record.created_at)),
            f"audit:exec:{record.exec_id}",
        )

    async def _publish_commands(self, bus: Bus, command: Command, subs: list[str]) -> None:
        payload = encode(command)
        gate = asyncio.Semaphore(_PUBLISH_CONCURRENCY)

        async def one(subject: str) -> None:
            async with gate:
                # msg_id per subject: a retried publish is deduplicated by the broker;
                # the agent itself dedups by request_id across subjects.
                await bus.publish_js(subject, payload, msg_id=f"{command.request_id}:{subject}")

        await asyncio.gather(*(one(s) for s in subs))

    async def _audit(self, bus: Bus, record: ExecRecord, command: Command, now: datetime) -> None:
        audit = _audit_record(record, command, now)
        try:
            await bus.publish_js(
                subjects.audit_subject("exec"), encode(audit), msg_id=f"audit:exec:{record.exec_id}"
            )
        except Exception:
            # The commands are out: failing the request now would invite a retry that
            # runs the job twice. Log loudly instead.
            log.exception("audit record not written", exec_id=record.exec_id)


def _audit_record(record: ExecRecord, command: Command, now: datetime) -> AuditRecord:
    return AuditRecord(
        action="exec",
        actor=record.initiated_by,
        at=now,
        details={
            "exec_id": record.exec_id,
            "kind": record.kind,
            "job_id": record.job_id,
            "version": record.version,
            "target": record.target,
            "expected_count": record.expected_count,
            "request_id": record.request_id,
            # Never the script or env (secrets); the hash identifies what ran.
            "script_sha256": command.script_sha256 or _sha256(command.script),
        },
    )


# --- pipelined JetStream publishing ---------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """One JetStream message, ready to go: subject, bytes and its ``Nats-Msg-Id`` (None
    for a KV put: a key is rewritten with new values, never deduplicated)."""

    subject: str
    payload: bytes
    msg_id: str | None


PIPELINE_YIELD_EVERY = 64
"""Messages handed to the client between two yields to the event loop (see below)."""
PIPELINE_ACK_TIMEOUT_S = 5.0
PIPELINE_MAX_PENDING = 2_000
"""Unacked messages at most. nats-py's own cap (4 000) makes ``publish_async`` wait for an
ack with no deadline — forever while the broker is away."""


async def send_pipelined(
    bus: Bus, messages: Sequence[Outgoing], *, yield_every: int = PIPELINE_YIELD_EVERY
) -> list[asyncio.Future[PubAck] | BaseException]:
    """Hand every message to the client without waiting for its ack; one pending ack (or
    the error that prevented sending) per message, in order. Pair with :func:`settle`.

    ``js.publish`` is a request/response: each message pays a reply subscription lookup,
    a future, a ``wait_for`` task and the ack's parse *before the next can start* in its
    coroutine, so even hundreds of concurrent ones leave the socket in dribbles. Here each
    message is one buffered PUB with a reply inbox on nats-py's shared async-reply
    subscription, and the acks are collected afterwards. Every ``yield_every`` messages
    the loop yields once so the client's flusher writes what is buffered: the first
    messages reach the broker (and a subscribed agent) while the rest are still being
    handed over, instead of all leaving in one write at the end. The messages go out on
    one connection in this order, so a caller that sends commands before records knows
    no record overtakes its commands.
    """
    js = bus.js
    out: list[asyncio.Future[PubAck] | BaseException] = []
    stalled = False
    for i, msg in enumerate(messages, 1):
        if not stalled and js.publish_async_pending() >= PIPELINE_MAX_PENDING:
            stalled = not await _some_acked(out)
        if stalled:
            out.append(TimeoutError("the broker stopped acknowledging publishes"))
            continue
        try:
            headers = None if msg.msg_id is None else {MSG_ID_HEADER: msg.msg_id}
            # No wait_stall: with one, nats-py wraps every publish in a wait_for task,
            # which costs more than the publish; the cap is kept by the check above.
            out.append(await js.publish_async(msg.subject, msg.payload, headers=headers))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # closed, reconnect buffer full: retried by the caller
            out.append(exc)
        if i % yield_every == 0:
            await asyncio.sleep(0)
    return out


async def _some_acked(pending: list[asyncio.Future[PubAck] | BaseException]) -> bool:
    """Wait until one of ``pending`` is acked (False: none within the ack timeout)."""
    waiting = [p for p in pending if isinstance(p, asyncio.Future) and not p.done()]
    if not waiting:
        return True  # the unacked ones are somebody else's: nothing of ours to wait for
    done, _ = await asyncio.wait(
        waiting, timeout=PIPELINE_ACK_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
    )
    return bool(done)


async def settle(
    pending: Sequence[asyncio.Future[PubAck] | BaseException],
    *,
    timeout: float = PIPELINE_ACK_TIMEOUT_S,
) -> list[BaseException | None]:
    """Wait (one deadline for all) for the acks of :func:`send_pipelined`; per message
    None when the broker stored it (or dropped it as a duplicate of its Nats-Msg-Id),
    else the error. An ack still missing at the deadline is a ``TimeoutError``: the
    caller retries, and the msg id makes a retry of a message that was stored harmless."""
    futures = [p for p in pending if isinstance(p, asyncio.Future)]
    if futures:
        _, late = await asyncio.wait(futures, timeout=timeout)
        for fut in late:
            fut.cancel()  # nats-py drops its reply slot when the future is done
    out: list[BaseException | None] = []
    for p in pending:
        if not isinstance(p, asyncio.Future):
            out.append(p)
        elif p.cancelled():
            out.append(TimeoutError(f"no ack from the broker within {timeout:g}s"))
        else:
            out.append(p.exception())
    return out


async def publish_one(bus: Bus, msg: Outgoing) -> None:
    """One message, waiting for its ack (the retry path of a pipelined publish)."""
    await bus.publish_js(msg.subject, msg.payload, msg_id=msg.msg_id)
