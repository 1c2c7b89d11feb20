"""Command intake (SPEC §3.1-3.2): the agent's one durable command consumer, decoding and
addressing each command, and its admission into the ledger before the broker's ack.

A command fired by the local scheduler is admitted the same way (:meth:`CommandIntake.submit`).
While the data directory is full a new command is refused at once with a skipped result
(docs/agent.md, "A full disk").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from kanade import __version__
from kanade.agent.durable.diskhealth import DiskHealth
from kanade.agent.durable.ledger import Admission, Ledger, command_digest
from kanade.agent.durable.outbox import Envelope, Outbox
from kanade.agent.executor import Executor
from kanade.agent.trust import Trust
from kanade.bus.consumers import add_or_replace_consumer, agent_command_consumer
from kanade.bus.pull import PullConsumer
from kanade.bus.retry import retry
from kanade.core import exitcodes, subjects
from kanade.core.admission import broadcast_refusal
from kanade.core.ids import is_slug
from kanade.core.instants import Clock, format_instant, parse_instant, system_clock
from kanade.core.models.wire import (
    Command,
    ConsumerReply,
    WireDecodeError,
    decode,
    decode_command,
    encode,
)
from kanade.core.msgids import result_msg_id
from kanade.core.results import skipped_result
from kanade.core.signing import header_of

log = logging.getLogger("kanade.agent")

ConsumerProvisioning = Callable[[Client, str, list[str]], Awaitable[list[str] | None]]
"""Makes sure ``agent-<pc_id>`` exists reading ``groups``; returns the filter subjects it
got (None: not known); raises to be retried."""

REQUEST_TIMEOUT_S = 10.0
MEMBERSHIP_RETRY_S = 5.0
STALE_PROVISIONING_ATTEMPTS = 8
"""How often a consumer whose filters miss a group change this agent has seen is asked
for again before the agent goes on with it (warned)."""
"""A group command met while the membership could not be re-read after a reconnect is
handed back to the broker for this long, then decided again."""


async def _always_current() -> bool:
    return True


class ConsumerRefused(RuntimeError):
    """The backend answered a consumer request with an error."""


class StaleProvisioning(RuntimeError):
    """The consumer's filters miss a membership change this agent has already seen."""


async def request_consumer(nc: Client, pc_id: str, _groups: list[str]) -> list[str] | None:
    """Ask the backend for the consumer (SPEC §8.1). The groups are not sent: the
    backend reads them from KV, and takes the pc from the subject only this agent's
    identity may publish on."""
    msg = await nc.request(subjects.consumer_request_subject(pc_id), b"", timeout=REQUEST_TIMEOUT_S)
    reply = decode(ConsumerReply, msg.data)
    if not reply.ok:
        raise ConsumerRefused(f"the backend refused: {reply.error}")
    return list(reply.filters)


async def create_consumer(nc: Client, pc_id: str, groups: list[str]) -> list[str] | None:
    """Create the consumer directly: only for an identity whose credential allows it
    (the benchmark swarm, on its own throw-away broker)."""
    config = agent_command_consumer(pc_id, groups)
    await add_or_replace_consumer(nc.jetstream(), subjects.STREAM_COMMANDS, config)
    return None


def load_enrollment(path: Path, clock: Clock = system_clock) -> datetime:
    """When this agent identity first started. Broadcast commands (all / group)
    issued before it are not for this machine; pc-addressed ones still are
    (:func:`kanade.core.admission.broadcast_refusal`)."""
    with contextlib.suppress(OSError, ValueError):
        return parse_instant(path.read_text())
    now = clock()
    try:
        path.write_text(format_instant(now))
    except OSError as exc:  # a full disk at the very first start: recorded at the next one
        log.error("cannot record the enrolment time in %s (%s)", path, exc)
    return now


class _Ignore(Exception):
    """A genuine command that is not for this pc: acked without a result."""


_MAX_ADDRESS_PROBES = 64
_GROUP_PREFIX = subjects.command_subject("group", "\0", "\0").split("\0")[0]


def subjects_of_address(cmd: Command) -> list[str]:
    """The subjects the backend publishes ``cmd`` on, from its ``address`` (the first few:
    this only names the reason of a refusal, and the body may be forged)."""
    address = cmd.address
    out = [subjects.command_subject("all", None, cmd.job_id)] if address.all else []
    out += [subjects.command_subject("group", g, cmd.job_id) for g in address.groups if g]
    out += [subjects.command_subject("pc", p, cmd.job_id) for p in address.pcs if p]
    return out[:_MAX_ADDRESS_PROBES]


def _stream_sequence(msg: Msg) -> int | None:
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:  # not a JetStream message (a test's plain publish)
        return None


class CommandIntake:
    """Pulls this agent's commands and admits each one exactly once (then hands it to the
    :class:`~kanade.agent.executor.Executor`)."""

    def __init__(
        self,
        *,
        pc_id: str,
        ledger: Ledger,
        outbox: Outbox,
        executor: Executor,
        trust: Trust,
        enrolled_at: datetime,
        groups: Callable[[], list[str]],
        joined: Callable[[], Mapping[str, datetime | None]] | None = None,
        kv_groups: Callable[[], list[str]] | None = None,
        membership_current: Callable[[], Awaitable[bool]] = _always_current,
        connection: Callable[[], Client | None],
        connected: Callable[[], bool],
        spawn: Callable[[Awaitable[Any]], asyncio.Task[Any]],
        pull_expires: float,
        pull_idle_heartbeat: float,
        provisioning: ConsumerProvisioning = request_consumer,
        clock: Clock = system_clock,
        disk: DiskHealth | None = None,
    ) -> None:
        self.pc_id = pc_id
        self.disk = disk
        self._clock = clock
        self.ledger = ledger
        self.outbox = outbox
        self.executor = executor
        self.trust = trust
        self.enrolled_at = enrolled_at
        self._groups = groups
        # Each current group → when this pc joined it (None: unknown); without it, the
        # groups count from the enrolment.
        self._joined = joined or (lambda: dict.fromkeys(self._groups()))
        self._membership_current = membership_current
        # The groups KV lists for this pc (what the backend provisions from); None: the
        # consumer's filters are not checked against them.
        self._kv_groups = kv_groups
        self._connection = connection
        self._connected = connected
        self._spawn = spawn
        self._pull_expires = pull_expires
        self._pull_idle_heartbeat = pull_idle_heartbeat
        self._provision = provisioning
        self.consumer: PullConsumer | None = None
        self._reopening: asyncio.Task[Any] | None = None
        self.last_command_at: datetime | None = None
        # Set once the command consumer is open: the agent can receive commands.
        self.ready = asyncio.Event()

    def _nc(self) -> Client:
        nc = self._connection()
        assert nc is not None
        return nc

    # --- the consumer -------------------------------------------------------------------------
    async def ensure_consumer(self) -> None:
        """Make sure this agent's one durable command consumer exists and reads its
        current groups (``bus.consumers.agent_command_consumer`` explains why it lives in
        broker memory and why losing it is harmless: the ledger absorbs the replay).

        Retried with capped backoff until it succeeds: the backend provisions it (an
        agent may not create consumers, SPEC §8.1), and the backend — or the command
        stream — may not be there yet.
        """
        attempts = 0
        stale_left = STALE_PROVISIONING_ATTEMPTS

        def warn(attempt: int, exc: BaseException, delay: float) -> None:
            nonlocal attempts
            attempts = attempt
            if isinstance(exc, StaleProvisioning):
                log.info("%s; asking again in %.1fs", exc, delay)
            # Once, then about every minute: a fleet waiting for its backend must not
            # flood its logs.
            elif attempt == 1 or attempt % 12 == 0:
                log.warning(
                    "cannot open the command consumer yet (%s); retrying in %.1fs", exc, delay
                )

        async def provision() -> None:
            nonlocal stale_left
            got = await self._provision(self._nc(), self.pc_id, self._groups())
            wanted = self._wanted_filters()
            if got is None or wanted is None or sorted(got) == wanted:
                return
            # The backend read the membership before the change this agent saw had been
            # stored (the agent sees a KV write as it is published): ask again, or the
            # consumer would miss a group joined — bounded, the difference may also be
            # the agent's own stale view.
            if stale_left > 0:
                stale_left -= 1
                raise StaleProvisioning(
                    f"the command consumer reads {sorted(got)}, this agent's membership "
                    f"says {wanted}"
                )
            log.warning("command consumer reads %s, not %s; going on with it", sorted(got), wanted)

        await retry(provision, base=0.2, cap=5.0, on_retry=warn)
        if attempts:
            log.info("command consumer ready after %d attempt(s)", attempts + 1)

    def _wanted_filters(self) -> list[str] | None:
        """The filters the backend provisions for this pc's KV groups (slugs only, as it
        does), None when unchecked."""
        if self._kv_groups is None:
            return None
        groups = [g for g in self._kv_groups() if is_slug(g)]
        return sorted(subjects.agent_command_filters(self.pc_id, groups))

    async def serve(self) -> None:
        """Pull and admit commands until cancelled."""
        self.consumer = PullConsumer(
            self._nc(),
            subjects.STREAM_COMMANDS,
            subjects.agent_consumer_name(self.pc_id),
            window=64,
            expires=self._pull_expires,
            idle_heartbeat=self._pull_idle_heartbeat,
            on_gone=self.consumer_gone,
        )
        self.ready.set()
        async for msg in self.consumer.messages():
            try:
                await self._on_command(msg)
            except Exception:
                # Never let one message stop intake; it stays unacked and is redelivered.
                log.exception("failed to admit a command on %s", msg.subject)

    def consumer_gone(self) -> None:
        """The broker answered a pull with "no such consumer" (restarted, or deleted)."""
        if self._reopening is None or self._reopening.done():
            self._reopening = self._spawn(self._reopen_consumer())

    async def _reopen_consumer(self) -> None:
        """Re-create the command consumer (idempotent when it still exists) and re-pull."""
        if self._connection() is None or not self._connected() or self.consumer is None:
            return  # the first connect creates it; a later reconnect calls us again
        await self.ensure_consumer()
        self.consumer.reset()

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.close()

    # --- admission ----------------------------------------------------------------------------
    def _addressed_to_me(self, cmd: Command, subject: str) -> tuple[bool | None, str]:
        """Whether a verified command is for this pc: True, None (not for it, but
        legitimately here: ignore quietly) or False (refuse, with the reason)."""
        parsed = subjects.parse_command_subject(subject)
        if parsed is None:
            return False, f"{subject} is not a command subject"
        scope, target, job_id = parsed
        if job_id != cmd.job_id:
            return False, f"subject job {job_id} != command job {cmd.job_id}"
        if scope == "pc":
            return (True, "pc") if target == self.pc_id else (False, f"addressed to pc {target}")
        # A group or fleet command is for this pc only if it was a member (enrolled) when
        # the command was issued (SPEC §3.2): a consumer re-created after a broker restart
        # or a join replays the group's retained commands, and those are not for it. Not
        # a member (joined later, or left since): nothing forged, ignored quietly.
        why_not = broadcast_refusal(
            scope, target, cmd.issued_at, enrolled_at=self.enrolled_at, joined=self._joined()
        )
        return (None, why_not) if why_not is not None else (True, scope)

    def _refusal(self, cmd: Command, subject: str, raw: bytes, header: str | None) -> str | None:
        """Why this pc must refuse the command (SPEC §8.2), None when it may go on to the
        gates; raises :class:`_Ignore` for a genuine command that is simply not for us."""
        verification = self.trust.verify_command(subject, raw, header)
        if verification.ok:
            ok, why = self._addressed_to_me(cmd, subject)
            if ok is None:
                raise _Ignore(why)
            return None if ok else f"refused: not addressed to this pc ({why}, on {subject})"
        # A genuine command re-published on another subject (another pc, another group)
        # verifies against the subject it was signed for: say so rather than "bad signature".
        for signed_for in subjects_of_address(cmd):
            if signed_for != subject and self.trust.verify_command(signed_for, raw, header).ok:
                return (
                    f"refused: not addressed to this pc (signed for {signed_for}, "
                    f"received on {subject})"
                )
        return f"refused: {verification.reason}"

    async def _on_command(self, msg: Msg) -> None:
        raw = msg.data
        try:
            # Out-of-bounds fields give a stand-in and the reason: answered, never run.
            cmd, invalid = decode_command(raw)
        except WireDecodeError as exc:
            log.warning("dropped a malformed command on %s: %s", msg.subject, exc)
            await msg.term()
            return
        if msg.subject.startswith(_GROUP_PREFIX) and not await self._membership_current():
            # Membership changes made while the connection was down are not known yet
            # (the re-read failed): deciding now could run a command of a group this pc
            # left and joined again meanwhile. The broker redelivers it later.
            log.warning(
                "group membership not re-read since the reconnect; command %s on %s "
                "deferred %.0fs",
                cmd.request_id,
                msg.subject,
                MEMBERSHIP_RETRY_S,
            )
            await msg.nak(delay=MEMBERSHIP_RETRY_S)
            return
        try:
            refusal = self._refusal(cmd, msg.subject, raw, header_of(msg.headers))
        except _Ignore as why:
            log.info("ignored command %s on %s: %s", cmd.request_id, msg.subject, why)
            await msg.ack()
            return
        self.last_command_at = self._clock()
        digest = command_digest(raw)
        seq = _stream_sequence(msg)
        if refusal is not None:
            # Admitted under its own ids: a forged command never takes the request_id of a
            # real one (which would then be refused as a conflict), its result never counts
            # in the exec it names, and a redelivery of the same forgery is a ledger
            # duplicate, reported once.
            log.warning("refusing command %s on %s: %s", cmd.request_id, msg.subject, refusal)
            cmd = cmd.model_copy(
                update={
                    "request_id": f"{cmd.request_id}:refused:{digest[:12]}",
                    "exec_id": f"{cmd.exec_id}:refused",
                }
            )
            text = encode(cmd).decode()
            extra = {"refused": refusal}
        else:
            text = raw.decode()
            extra = {} if seq is None else {"seq": str(seq), "subject": msg.subject}
        admission = self._admit(cmd, digest, text, extra, refusal)
        await msg.ack()
        if admission is None:
            return  # refused for a full disk: its skipped result is on its way
        if admission is Admission.NEW:
            self.executor.start(cmd, refusal=refusal, invalid=invalid)
        elif admission is Admission.CONFLICT:
            self._report_conflict(cmd, raw)
        elif refusal is None and seq is not None:
            self._maybe_report_replay(cmd, msg.subject, seq)

    def _admit(
        self,
        cmd: Command,
        digest: str,
        text: str,
        extra: dict[str, str] | None = None,
        refusal: str | None = None,
    ) -> Admission | None:
        """Admit ``cmd`` in the ledger before the broker's ack. None: it is new but the data
        directory is full, so it was refused at once (SPEC §7) — admitted in memory (a
        redelivery is still a duplicate; written once the disk has room) and reported."""
        known = self.ledger.seen(cmd.request_id, digest)
        if known is not None:
            return known
        if self.disk is None or not self.disk.full:
            try:
                return self.ledger.admit(cmd.request_id, digest, text, time.time(), extra=extra)
            except OSError:
                if self.disk is None:
                    raise
        self.ledger.admit(
            cmd.request_id, digest, text, time.time(), extra=extra, must_write=False
        )
        log.info("refused command %s: no room in the data directory", cmd.request_id)
        if refusal is not None:
            self.executor.skip(cmd, exitcodes.REFUSED, refusal)
        else:
            self.executor.skip_disk_full(cmd)
        return None

    def _maybe_report_replay(self, cmd: Command, subject: str, seq: int) -> None:
        """An admitted command seen again as a *different* message on the *same* subject:
        the same bytes published again (a replay). Not a redelivery of the admitted
        message (same sequence: a consumer re-created after a broker restart replays
        those), nor the same command on another of its addresses (a pc in two targeted
        groups receives it twice)."""
        entry = self.ledger.get(cmd.request_id)
        if entry is None or entry.extra.get("subject") != subject:
            return
        first = entry.extra.get("seq")
        if first is None or first == str(seq):
            return
        reason = (
            f"refused: replay of request_id {cmd.request_id}, already admitted "
            f"(stream message {first}; this copy is message {seq})"
        )
        log.warning("refused command %s: %s", cmd.request_id, reason)
        # Under ids of its own: the exec it repeats keeps exactly one result from this pc.
        alias = {"request_id": f"{cmd.request_id}:replay:{seq}", "exec_id": f"{cmd.exec_id}:replay"}
        self._report_refused(cmd.model_copy(update=alias), reason)

    def submit(self, cmd: Command) -> Admission:
        """Admit a command fired on this agent (its local scheduler, SPEC §3.6) exactly like
        a received one: ledger admission (a re-fired occurrence is a DUPLICATE and never
        runs twice), then gates (§3.3) → execution → outbox (§3.4-3.5)."""
        raw = encode(cmd)
        admission = self._admit(cmd, command_digest(raw), raw.decode())
        if admission is None:
            return Admission.NEW  # refused for a full disk, and reported
        if admission is Admission.NEW:
            self.executor.start(cmd)
        elif admission is Admission.CONFLICT:
            self._report_conflict(cmd, raw)
        return admission

    def _report_conflict(self, cmd: Command, raw: bytes) -> None:
        """The same request_id arrived with different content: refuse and say so.

        The report gets its own result id so it cannot overwrite the result of
        the command that was really admitted under that request_id.
        """
        log.error("refused command %s: request_id reused with different content", cmd.request_id)
        alias = cmd.model_copy(
            update={"request_id": f"{cmd.request_id}:conflict:{command_digest(raw)[:12]}"}
        )
        self._report_refused(
            alias, "refused: this request_id was already admitted with different content"
        )

    def _report_refused(self, alias: Command, reason: str) -> None:
        """A 123 result straight to the outbox, under ``alias``'s own request id."""
        result = skipped_result(
            alias,
            self.pc_id,
            exit_code=exitcodes.REFUSED,
            now=self._clock(),
            reason=reason,
            agent_version=__version__,
        )
        self.outbox.put(
            Envelope(
                subjects.result_subject(self.pc_id), result_msg_id(result.result_id), encode(result)
            )
        )
