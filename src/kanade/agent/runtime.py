"""The agent process: intake → gates → ledger → run → outbox, plus heartbeats and control.

Local durability comes first: everything the agent learns (an admitted
command, a finished result) is on disk before it acknowledges or publishes
anything, so the agent can crash, lose the broker or be restarted at any
instant and still run each command at most once and report every result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from kanade import __version__
from kanade.agent.fleetstate import FleetState
from kanade.agent.fsutil import atomic_write, remove
from kanade.agent.kvmirror import KvMirror
from kanade.agent.ledger import Admission, Ledger, command_digest
from kanade.agent.limiter import FifoLimiter
from kanade.agent.outbox import Attachment, Envelope, Outbox
from kanade.agent.process import ProcessOutcome, run_process
from kanade.agent.scheduler import LocalScheduler
from kanade.agent.scripts import ScriptCache, ScriptRejected, ScriptUnavailable
from kanade.agent.settings import AgentSettings
from kanade.agent.shells import shell_argv
from kanade.agent.telemetry import Telemetry
from kanade.bus.connection import connect
from kanade.bus.pull import PullConsumer
from kanade.core import exitcodes, subjects
from kanade.core.agentconfig import Effective, effective_config
from kanade.core.gates import KvView, check_deadline, evaluate_gates
from kanade.core.ids import result_id_for
from kanade.core.models.wire import (
    Command,
    Result,
    WireDecodeError,
    decode,
    encode,
)
from kanade.core.results import (
    event_started,
    run_result,
    skipped_result,
    unknown_outcome_result,
)

log = logging.getLogger("kanade.agent")

# JetStream's error code for "storage type can not be updated" (consumer create/update).
_STORAGE_TYPE_IMMUTABLE = 10012

# How long a remote kill keeps applying to commands of that exec that arrive late.
_KILL_MEMORY_S = 600.0

# How a script is executed. Real agents run subprocesses; the swarm simulator
# swaps in an instant stub with the same signature.
Runner = Callable[[Command, list[str], "RunContext"], Awaitable[ProcessOutcome]]
# How the agent gets its NATS connection: its own (the default), or a swarm's
# shared one. Called with the agent's connection-state callback.
Connector = Callable[[Callable[[str], None]], Awaitable[Client]]


@dataclass
class RunContext:
    kill: asyncio.Event
    spool_dir: Path
    spool_name: str
    cap_bytes: int


@dataclass
class _Tracked:
    cmd: Command
    kill: asyncio.Event = field(default_factory=asyncio.Event)
    started: bool = False
    # Why the kill event was set: a remote kill, or the agent stopping.
    kill_reason: str = "killed by remote request"


async def subprocess_runner(cmd: Command, argv: list[str], ctx: RunContext) -> ProcessOutcome:
    return await run_process(
        argv,
        timeout_s=cmd.timeout_s,
        cap_bytes=ctx.cap_bytes,
        spool_dir=ctx.spool_dir,
        spool_name=ctx.spool_name,
        kill=ctx.kill,
        env=cmd.env,
        cwd=cmd.cwd,
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        runner: Runner = subprocess_runner,
        fleet: FleetState | None = None,
        connector: Connector | None = None,
    ) -> None:
        self.s = settings
        self.pc_id = settings.pc_id
        self.groups: list[str] = sorted(set(settings.groups))
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(data / "ledger", durable=settings.durable)
        self.outbox = Outbox(data / "outbox", durable=settings.durable)
        self.spool_dir = data / "spool"
        self.spool_dir.mkdir(exist_ok=True)
        self.scripts = ScriptCache(data / "scripts")
        self.enrolled_at = self._load_enrollment(data / "enrolled_at")
        self._runner = runner
        self._telemetry = Telemetry()
        self._limiter = FifoLimiter(settings.max_local_concurrent)
        self._tracked: dict[str, _Tracked] = {}
        self._killed_execs: dict[str, float] = {}  # exec_id -> monotonic time of the kill
        self._by_exec: dict[str, set[str]] = defaultdict(set)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self.nc: Client | None = None
        self._connected = False
        # Wall-clock time up to which the mirrored fleet state is known to be current:
        # None while connected and synced; the disconnect time (or the persisted
        # snapshot's time after a restart) otherwise; -inf when never synced.
        self._in_sync_at: float | None = float("-inf")
        self._state_dirty = asyncio.Event()
        self._consumer: PullConsumer | None = None
        self._reopening: asyncio.Task[Any] | None = None
        self.last_command_at: datetime | None = None
        self.view = KvView()
        self.static_groups = list(self.groups)
        self.heartbeat_interval = settings.heartbeat_interval
        # The settings this agent was started with: the base under the KV layers.
        self._local_config = {
            "heartbeat_interval": settings.heartbeat_interval,
            "max_local_concurrent": settings.max_local_concurrent,
            "log_level": settings.log_level,
            "max_output_bytes": settings.max_output_bytes,
        }
        self._hb_wake = asyncio.Event()
        self.config = Effective({})
        # Fleet state mirrored from KV (SPEC §3.3 gates, §3.7 config and groups).
        # A swarm passes one shared FleetState and one shared connection; it then
        # owns re-syncing them, not each identity.
        self._owns_fleet = fleet is None
        self.fleet = fleet or FleetState(pc_id=self.pc_id, groups=self.groups)
        self.fleet.listen(self._on_fleet_state)
        self._owns_nc = connector is None
        # Set once the command consumer is open: the agent can receive commands.
        self.ready = asyncio.Event()
        self._js: Any = None
        self._connector = connector
        # Told of every result the agent records, as (command, result), after it is queued.
        self.on_finished: list[Callable[[Command, Result], None]] = []
        # The local scheduler (SPEC §3.6): fires through submit_local, learns outcomes
        # through on_finished, reports its applied set in every heartbeat.
        self.scheduler = LocalScheduler(
            pc_id=self.pc_id,
            data_dir=data,
            fleet=self.fleet,
            submit=self.submit_local,
            groups=lambda: self.groups,
            connection=lambda: self.nc,
            in_flight=lambda request_id: request_id in self._tracked,
            on_applied=lambda _version: self._hb_wake.set(),
            durable=settings.durable,
        )
        self.on_finished.append(self.scheduler.on_finished)

    # --- identity --------------------------------------------------------------------
    @staticmethod
    def _load_enrollment(path: Path) -> datetime:
        """When this agent identity first started. Broadcast commands (all / group)
        issued before it are not for this machine; pc-addressed ones still are."""
        with contextlib.suppress(OSError, ValueError):
            return datetime.fromisoformat(path.read_text().strip())
        now = _utcnow()
        path.write_text(now.isoformat())
        return now

    # --- lifecycle ---------------------------------------------------------------------
    async def run(self) -> None:
        log.info("agent %s starting (groups: %s)", self.pc_id, ",".join(self.groups) or "-")
        self.ledger.load()
        self._restore_fleet_state()  # before recovery: pending commands meet the gates
        self._recover()
        self._spawn(self._persist_fleet_state_loop())
        self._spawn(self.outbox.drain_forever(self._publish, self._upload, ready=self._ready))
        self._spawn(self._connect_and_serve())
        self._spawn(self.scheduler.run())
        self._spawn(self._heartbeat_loop())
        self._spawn(self._prune_loop())
        await self._stop.wait()
        await self._shutdown()

    def stop(self) -> None:
        self._stop.set()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("agent task failed", exc_info=task.exception())

    async def _shutdown(self) -> None:
        self.scheduler.stop()  # no new local fires while shutting down
        # Scripts still running are ended; their ledger entries stay "launching"
        # only if we die before reporting, otherwise they report -1 as killed.
        for tracked in self._tracked.values():
            tracked.kill_reason = "killed because the agent was stopped"
            tracked.kill.set()
        running = [t for t in self._tasks if getattr(t, "_kanade_exec", False)]
        if running:
            await asyncio.wait(running, timeout=10)
        # Give the outbox a last chance to flush what is ready.
        if self._ready():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.outbox.drain_once(self._publish, self._upload), 5)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.close()
        if self._owns_nc and self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        self.ledger.close()
        log.info("agent %s stopped", self.pc_id)

    # --- crash recovery ----------------------------------------------------------------------
    def _recover(self) -> None:
        now = _utcnow()
        # Output spooled by a run that died with the agent (kill -9) and never
        # reached the outbox: nothing will ever upload it.
        keep = self.outbox.attachment_paths()
        for spooled in self.spool_dir.iterdir():
            if str(spooled) not in keep:
                remove(spooled)
        for entry in self.ledger.in_state("launching"):
            cmd = decode(Command, entry.command.encode())
            launched = datetime.fromtimestamp(entry.updated_at, UTC)
            log.warning(
                "command %s was running when the agent stopped: outcome unknown", entry.request_id
            )
            self._finish(
                cmd,
                unknown_outcome_result(
                    cmd, self.pc_id, launched_at=launched, now=now, agent_version=__version__
                ),
            )
        for entry in self.ledger.in_state("finished"):
            if not entry.queued and entry.result is not None:
                result_id = result_id_for(entry.request_id, self.pc_id)
                if not self.outbox.contains_msg_id(result_id):
                    self.outbox.put(
                        Envelope(
                            subjects.result_subject(self.pc_id), result_id, entry.result.encode()
                        )
                    )
                self.ledger.mark_queued(entry.request_id)
        for entry in self.ledger.in_state("pending"):
            self._start_command(decode(Command, entry.command.encode()))

    # --- bus -------------------------------------------------------------------------------------
    def _ready(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    def _on_state(self, state: str) -> None:
        if state in ("connected", "reconnected"):
            self._connected = True
            self._in_sync_at = None
            self.outbox.wake()
            if state == "reconnected":
                self._spawn(self._resync())
                self._spawn(self._send_heartbeat())
                # A broker restart drops the (memory-backed) command consumer.
                self._consumer_gone()
        elif state in ("disconnected", "closed"):
            self._connected = False
            if self._in_sync_at is None:
                self._in_sync_at = time.time()
                self._state_dirty.set()  # record how long we were in sync

    def kv_view(self) -> KvView:
        age = 0.0 if self._in_sync_at is None else max(0.0, time.time() - self._in_sync_at)
        return KvView(pins=self.view.pins, revoked=self.view.revoked, age_s=age)

    async def _publish(self, subject: str, data: bytes, msg_id: str) -> None:
        assert self.nc is not None
        if self._js is None:
            self._js = self.nc.jetstream()
        await self._js.publish(subject, data, headers={"Nats-Msg-Id": msg_id}, timeout=5.0)

    async def _upload(self, name: str, path: Path) -> None:
        assert self.nc is not None
        store = await self.nc.jetstream().object_store(subjects.OBJ_OUTPUTS)
        with open(path, "rb") as fh:
            await store.put(name, fh)

    async def _connect_and_serve(self) -> None:
        if self.s.startup_delay_max > 0:
            await asyncio.sleep(random.uniform(0, self.s.startup_delay_max))
        if self._connector is not None:
            self.nc = await self._connector(self._on_state)
        else:
            self.nc = await connect(
                self.s.nats_urls, name=f"kanade-agent:{self.pc_id}", on_state=self._on_state
            )
        self._on_state("connected")
        await self.nc.subscribe(subjects.ping_subject(self.pc_id), cb=self._on_ping)
        if self._owns_nc:
            # A swarm subscribes once for all its identities and calls kill_exec().
            await self.nc.subscribe(subjects.KILL_SUBJECT, cb=self._on_kill)
        await self._resync()
        await self._send_heartbeat()
        await self._ensure_consumer()
        await self._intake()

    async def _ensure_consumer(self) -> None:
        """Create or update this agent's one durable command consumer.

        Retried until the command stream exists (the backend creates it; an agent
        has no right to create streams).

        The consumer keeps its state (delivered/acked positions) in the broker's
        memory, not on its disk: with one consumer per agent, a file-backed state
        costs the broker a file rewrite per agent per command (at 10 000 agents that
        disk traffic, not CPU, bounded a fan-out; see docs/performance.md). Nothing
        depends on that state surviving: the commands themselves stay in the
        file-backed stream, and "already admitted" is decided by this agent's fsync'd
        ledger, which outlives the stream's max age. So when a broker restart drops
        the consumer, it is re-created (on reconnect, or when a pull is answered
        "no such consumer"), the retained commands for this pc are replayed — at most
        one per job per address, the stream keeps only the newest — and the ledger
        acks each replay as a duplicate without running it.
        """
        assert self.nc is not None
        js = self.nc.jetstream()
        name = subjects.agent_consumer_name(self.pc_id)
        config = ConsumerConfig(
            name=name,
            durable_name=name,
            filter_subjects=subjects.agent_command_filters(self.pc_id, self.groups),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30.0,
            max_ack_pending=1000,
            # An agent that never comes back stops costing the broker after 30 days.
            inactive_threshold=30 * 86400.0,
            mem_storage=True,
        )
        delay = 0.2
        while True:
            try:
                await js.add_consumer(subjects.STREAM_COMMANDS, config)
                return
            except APIError as exc:
                if exc.err_code != _STORAGE_TYPE_IMMUTABLE:
                    log.warning("cannot open the command consumer yet (%s); retrying", exc)
                    await asyncio.sleep(delay + random.uniform(0, delay))
                    delay = min(delay * 2, 5.0)
                    continue
                # A file-backed consumer left by an older agent: the broker cannot
                # change storage in place. Replace it; the ledger absorbs the replay.
                log.info("moving the command consumer to memory storage")
                with contextlib.suppress(NotFoundError):
                    await js.delete_consumer(subjects.STREAM_COMMANDS, name)
            except Exception as exc:
                log.warning("cannot open the command consumer yet (%s); retrying", exc)
                await asyncio.sleep(delay + random.uniform(0, delay))
                delay = min(delay * 2, 5.0)

    async def _intake(self) -> None:
        assert self.nc is not None
        self._consumer = PullConsumer(
            self.nc,
            subjects.STREAM_COMMANDS,
            subjects.agent_consumer_name(self.pc_id),
            window=64,
            expires=self.s.pull_expires,
            idle_heartbeat=self.s.pull_idle_heartbeat,
            on_gone=self._consumer_gone,
        )
        self.ready.set()
        async for msg in self._consumer.messages():
            try:
                await self._on_command(msg)
            except Exception:
                # Never let one message stop intake; it stays unacked and is redelivered.
                log.exception("failed to admit a command on %s", msg.subject)

    def _consumer_gone(self) -> None:
        """The broker answered a pull with "no such consumer" (restarted, or deleted)."""
        if self._reopening is None or self._reopening.done():
            self._reopening = self._spawn(self._reopen_consumer())

    async def _reopen_consumer(self) -> None:
        """Re-create the command consumer (idempotent when it still exists) and re-pull."""
        if self.nc is None or not self._ready() or self._consumer is None:
            return  # the first connect creates it; a later reconnect calls us again
        await self._ensure_consumer()
        self._consumer.reset()

    # --- intake ------------------------------------------------------------------------------
    def _addressed_to_me(self, cmd: Command, subject: str) -> tuple[bool, str]:
        parsed = subjects.parse_command_subject(subject)
        if parsed is None:
            return False, "not a command subject"
        scope, target, job_id = parsed
        if job_id != cmd.job_id:
            return False, f"subject job {job_id} != command job {cmd.job_id}"
        if scope == "pc":
            return target == self.pc_id, "pc"
        if cmd.issued_at < self.enrolled_at:
            return False, "broadcast issued before this agent enrolled"
        if scope == "group":
            return target in self.groups, "group"
        return True, "all"

    async def _on_command(self, msg: Msg) -> None:
        raw = msg.data
        try:
            cmd = decode(Command, raw)
        except WireDecodeError as exc:
            log.warning("dropped a malformed command on %s: %s", msg.subject, exc)
            await msg.term()
            return
        ok, why = self._addressed_to_me(cmd, msg.subject)
        if not ok:
            log.debug("ignored command %s: %s", cmd.request_id, why)
            await msg.ack()
            return
        self.last_command_at = _utcnow()
        admission = self.ledger.admit(
            cmd.request_id, command_digest(raw), raw.decode(), time.time()
        )
        await msg.ack()
        if admission is Admission.NEW:
            self._start_command(cmd)
        elif admission is Admission.CONFLICT:
            self._report_conflict(cmd, raw)

    def submit_local(self, cmd: Command) -> Admission:
        """Admit a command fired on this agent (its local scheduler, SPEC §3.6) exactly like
        a received one: ledger admission (a re-fired occurrence is a DUPLICATE and never
        runs twice), then gates (§3.3) → execution → outbox (§3.4-3.5)."""
        raw = encode(cmd)
        admission = self.ledger.admit(
            cmd.request_id, command_digest(raw), raw.decode(), time.time()
        )
        if admission is Admission.NEW:
            self._start_command(cmd)
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
        result = skipped_result(
            alias,
            self.pc_id,
            exit_code=exitcodes.REFUSED,
            now=_utcnow(),
            reason="refused: this request_id was already admitted with different content",
            agent_version=__version__,
        )
        self.outbox.put(
            Envelope(subjects.result_subject(self.pc_id), result.result_id, encode(result))
        )

    # --- execution ----------------------------------------------------------------------------
    @property
    def queue_length(self) -> int:
        return sum(1 for t in self._tracked.values() if not t.started)

    @property
    def running(self) -> int:
        return sum(1 for t in self._tracked.values() if t.started)

    def _start_command(self, cmd: Command) -> None:
        tracked = _Tracked(cmd)
        if cmd.exec_id in self._killed_execs:
            tracked.kill.set()  # killed before it got here: reported as cancelled
        self._tracked[cmd.request_id] = tracked
        self._by_exec[cmd.exec_id].add(cmd.request_id)
        task = self._spawn(self._execute(tracked))
        task._kanade_exec = True  # type: ignore[attr-defined]

    async def _execute(self, tracked: _Tracked) -> None:
        cmd = tracked.cmd
        try:
            if cmd.urgent:
                await self._execute_admitted(tracked)
            elif await self._wait_for_slot(tracked):
                try:
                    await self._execute_admitted(tracked)
                finally:
                    self._limiter.release()
            else:
                self._skip(cmd, exitcodes.KILLED, "cancelled by remote kill while queued")
        finally:
            self._tracked.pop(cmd.request_id, None)
            ids = self._by_exec.get(cmd.exec_id)
            if ids is not None:
                ids.discard(cmd.request_id)
                if not ids:
                    self._by_exec.pop(cmd.exec_id, None)

    async def _wait_for_slot(self, tracked: _Tracked) -> bool:
        """Queue for a slot under max_local_concurrent. False when a kill arrives first:
        a queued command is cancelled at once, not when it reaches the front."""
        if self._limiter.try_acquire():
            return True  # a free slot: no queueing, no futures
        acquire = asyncio.ensure_future(self._limiter.acquire())
        killed = asyncio.ensure_future(tracked.kill.wait())
        try:
            await asyncio.wait({acquire, killed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            killed.cancel()
            if not acquire.done():
                acquire.cancel()  # FifoLimiter gives back a slot granted meanwhile
                with contextlib.suppress(asyncio.CancelledError):
                    await acquire
        return not acquire.cancelled() and acquire.exception() is None

    def _skip(self, cmd: Command, code: int, reason: str) -> None:
        self._finish(
            cmd,
            skipped_result(
                cmd,
                self.pc_id,
                exit_code=code,
                reason=reason,
                now=_utcnow(),
                agent_version=__version__,
            ),
        )

    async def _interruptible_wait(self, seconds: float, kill: asyncio.Event) -> bool:
        """Wait ``seconds``; True if a kill arrived meanwhile."""
        if seconds <= 0:
            return kill.is_set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(kill.wait(), timeout=seconds)
        return kill.is_set()

    async def _execute_admitted(self, tracked: _Tracked) -> None:
        cmd = tracked.cmd
        script = cmd.script or ""
        argv = shell_argv(cmd.shell, script)
        skip = evaluate_gates(
            cmd, now=_utcnow(), view=self.kv_view(), shell_available=argv is not None
        )
        if skip is not None:
            self._skip(cmd, skip.exit_code, skip.reason)
            return
        if cmd.script_object:
            try:
                script = await self.scripts.resolve(self.nc, cmd.script_object, cmd.script_sha256)
            except ScriptRejected as exc:
                self._skip(cmd, exitcodes.REFUSED, f"refused: {exc}")
                return
            except ScriptUnavailable as exc:
                self._skip(cmd, exitcodes.UNSUPPORTED, str(exc))
                return
            argv = shell_argv(cmd.shell, script)
        assert argv is not None
        jitter = random.uniform(0, cmd.jitter_s) if cmd.jitter_s > 0 else 0.0
        if await self._interruptible_wait(jitter, tracked.kill):
            self._skip(cmd, exitcodes.KILLED, "cancelled by remote kill before it started")
            return
        late = check_deadline(cmd.deadline_at, _utcnow())
        if late is not None:
            self._skip(cmd, late.exit_code, late.reason)
            return
        # From here the script may run: a crash now must never lead to a re-run.
        self.ledger.mark_launching(cmd.request_id, time.time())
        tracked.started = True
        result_id = result_id_for(cmd.request_id, self.pc_id)
        started_at = _utcnow()
        started = event_started(cmd, self.pc_id, started_at)
        self.outbox.put(
            Envelope(subjects.started_subject(self.pc_id), f"{result_id}.started", encode(started))
        )
        ctx = RunContext(
            tracked.kill,
            self.spool_dir,
            result_id,
            min(cmd.max_output_bytes, self.s.max_output_bytes),
        )
        retry_max = cmd.retry.max if cmd.retry else 0
        attempts = 0
        notes: list[str] = []
        while True:
            attempts += 1
            outcome = await self._runner(cmd, argv, ctx)
            if outcome.exit_code == 0 or outcome.killed or attempts > retry_max:
                break
            backoff = cmd.retry.backoff_s if cmd.retry else 0.0
            notes.append(f"attempt {attempts} exited {outcome.exit_code}")
            if await self._interruptible_wait(backoff, tracked.kill):
                notes.append("retry interrupted by remote kill")
                break
        if outcome.killed:
            outcome.note = tracked.kill_reason
        if outcome.note:
            notes.append(outcome.note)
        if attempts > 1:
            notes.append(f"final attempt {attempts} of {retry_max + 1} reported")
        attachments: list[Attachment] = []
        refs: dict[str, str | None] = {"stdout": None, "stderr": None}
        for stream, cap in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
            if cap.spool is not None:
                name = f"{result_id}/{stream}"
                refs[stream] = name
                attachments.append(Attachment(name, str(cap.spool)))
        result = run_result(
            cmd,
            self.pc_id,
            exit_code=outcome.exit_code,
            stdout=outcome.stdout.head,
            stderr=outcome.stderr.head,
            stdout_total=outcome.stdout.total,
            stderr_total=outcome.stderr.total,
            stdout_ref=refs["stdout"],
            stderr_ref=refs["stderr"],
            started_at=started_at,
            finished_at=outcome.finished_at,
            attempts=attempts,
            note="; ".join(notes) or None,
            agent_version=__version__,
        )
        self._finish(cmd, result, attachments)

    def _finish(
        self, cmd: Command, result: Result, attachments: list[Attachment] | None = None
    ) -> None:
        payload = encode(result)
        if self.ledger.get(cmd.request_id) is not None:
            self.ledger.mark_finished(cmd.request_id, payload.decode(), time.time())
        self.outbox.put(
            Envelope(
                subjects.result_subject(self.pc_id), result.result_id, payload, attachments or []
            )
        )
        if self.ledger.get(cmd.request_id) is not None:
            self.ledger.mark_queued(cmd.request_id)
        for callback in self.on_finished:
            try:
                callback(cmd, result)
            except Exception:
                log.exception("on_finished callback failed for %s", cmd.request_id)

    # --- fleet state from KV -------------------------------------------------------------------
    async def _resync(self) -> None:
        """Re-read every mirrored bucket after a (re)connect (SPEC §3.6 re-sync rules)."""
        if self.nc is not None and self._owns_fleet:
            await self.fleet.resync(self.nc)

    def _decode_json(self, raw: bytes, what: str) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            log.warning("ignored undecodable %s in KV", what)
            return None

    @property
    def _fleet_state_file(self) -> Path:
        return self.s.data_dir / "fleet-state.json"

    def _restore_fleet_state(self) -> None:
        if not self._owns_fleet:
            return  # a swarm's shared state is not persisted per identity
        with contextlib.suppress(OSError):
            in_sync_at = self.fleet.restore(self._fleet_state_file.read_bytes())
            if in_sync_at is None:
                log.warning("fleet state file is unreadable; starting without it")
            elif self._in_sync_at is not None:
                self._in_sync_at = in_sync_at

    async def _persist_fleet_state_loop(self) -> None:
        """Write the mirrored state to disk after changes, at most once a second."""
        if not self._owns_fleet:
            return
        while True:
            await self._state_dirty.wait()
            self._state_dirty.clear()
            in_sync_at = time.time() if self._in_sync_at is None else self._in_sync_at
            if in_sync_at != float("-inf"):
                atomic_write(self._fleet_state_file, self.fleet.snapshot(in_sync_at),
                             durable=self.s.durable)
            await asyncio.sleep(1.0)

    def _on_fleet_state(self, mirror: KvMirror) -> None:
        """Recompute what depends on KV: gate view, group membership, effective config."""
        self._state_dirty.set()
        fleet = self.fleet
        if mirror is fleet.pins or mirror is fleet.revocations:
            pins = {k: v.decode(errors="replace") for k, v in fleet.pins.values.items()}
            revoked = frozenset(fleet.revocations.values)
            self.view = KvView(pins=pins, revoked=revoked)
            return
        if mirror is fleet.membership:
            raw = fleet.membership.values.get(self.pc_id)
            listed = self._decode_json(raw, "group membership") if raw else []
            kv_groups = (
                [g for g in listed if isinstance(g, str)] if isinstance(listed, list) else []
            )
            groups = sorted(set(self.static_groups) | set(kv_groups))
            if groups != self.groups:
                log.info("group membership changed: %s -> %s", self.groups, groups)
                self.groups = groups
                self._spawn(self._on_groups_changed())
            return
        if mirror in (fleet.schedules, fleet.jobs, fleet.freeze):
            return  # the local scheduler listens to these itself
        layers: dict[str, dict[str, Any]] = {}
        for key, raw in fleet.config.values.items():
            value = self._decode_json(raw, f"config layer {key}")
            if isinstance(value, dict):
                layers[key] = value
        eff = effective_config(
            layers, pc_id=self.pc_id, groups=self.groups, local=self._local_config
        )
        for warning in eff.warnings:
            if warning not in self.config.warnings:
                log.warning("config: %s", warning)
        self._apply_config(eff)

    def _apply_config(self, eff: Effective) -> None:
        old = self.config.values
        self.config = eff
        values = eff.values
        if values.get("heartbeat_interval") != old.get("heartbeat_interval"):
            self.heartbeat_interval = float(values["heartbeat_interval"])
            self._hb_wake.set()
        if values.get("max_local_concurrent") != old.get("max_local_concurrent"):
            self._limiter.set_limit(int(values["max_local_concurrent"]))
        if values.get("log_level") != old.get("log_level"):
            logging.getLogger().setLevel(str(values["log_level"]).upper())
        if values != old:
            log.info("effective config: %s", values)

    async def _on_groups_changed(self) -> None:
        """Subscriptions and config follow the new membership, without a restart."""
        if self.nc is None or not self._ready():
            return  # applied by the re-sync on the next connect
        await self._ensure_consumer()
        await self.fleet.follow_groups(self.nc, self.pc_id, self.groups)
        await self._send_heartbeat()

    # --- control -------------------------------------------------------------------------------
    async def _on_kill(self, msg: Msg) -> None:
        try:
            exec_id = str(json.loads(msg.data)["exec_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed kill request")
            return
        self.kill_exec(exec_id)

    def kill_exec(self, exec_id: str) -> None:
        """End every running or queued command of ``exec_id`` on this agent.

        The exec id is also remembered for a while: a command of that exec that was
        already on its way (fetched, not yet admitted) must not start after the kill.
        """
        now = time.monotonic()
        self._killed_execs[exec_id] = now
        for old, at in list(self._killed_execs.items()):
            if now - at > _KILL_MEMORY_S:
                del self._killed_execs[old]
        for request_id in list(self._by_exec.get(exec_id, ())):
            tracked = self._tracked.get(request_id)
            if tracked is not None:
                log.info("killing %s (exec %s) by remote request", request_id, exec_id)
                tracked.kill.set()

    async def _on_ping(self, msg: Msg) -> None:
        if msg.reply:
            await msg.respond(encode(self._heartbeat()))

    def _heartbeat(self) -> Any:
        return self._telemetry.heartbeat(
            pc_id=self.pc_id,
            groups=self.groups,
            last_command_at=self.last_command_at,
            queue_length=self.queue_length,
            running=self.running,
            schedule_set_version=self.scheduler.version,
        )

    async def _send_heartbeat(self) -> None:
        if self._ready():
            assert self.nc is not None
            with contextlib.suppress(Exception):
                await self.nc.publish(
                    subjects.heartbeat_subject(self.pc_id), encode(self._heartbeat())
                )

    async def _heartbeat_loop(self) -> None:
        while True:
            self._hb_wake.clear()
            with contextlib.suppress(TimeoutError):
                # Woken early when the interval is changed live.
                await asyncio.wait_for(self._hb_wake.wait(), timeout=self.heartbeat_interval)
            await self._send_heartbeat()

    async def _prune_loop(self) -> None:
        while True:
            pruned = self.ledger.prune(time.time())
            if pruned:
                log.info("pruned %d old ledger entries", pruned)
            await asyncio.sleep(3600)
