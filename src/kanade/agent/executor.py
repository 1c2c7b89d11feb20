"""Running admitted commands: local concurrency, gates, jitter, the started event, the
process with its retries, and the result into the ledger and the outbox (SPEC §3.3-3.5).

Also the crash recovery of the ledger's entries: a command that was launching when the
agent died is reported as "outcome unknown", never re-run (once what its script left running
is ended); a pending one runs. While the data directory is full, nothing new starts: each
command gets a skipped result, and results are held in memory until written or sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client

from kanade import __version__
from kanade.agent import accounts
from kanade.agent.containment import Containment, ProcessTree
from kanade.agent.control import KillMemory
from kanade.agent.durable.diskhealth import DiskHealth
from kanade.agent.durable.fsutil import remove
from kanade.agent.durable.ledger import Ledger
from kanade.agent.durable.outbox import Attachment, Envelope, Outbox
from kanade.agent.limiter import FifoLimiter
from kanade.agent.process import ProcessOutcome, run_process
from kanade.agent.scripts import ScriptCache, ScriptRejected, ScriptUnavailable
from kanade.agent.shells import ARGV_SCRIPT_MAX, FILE_SUFFIX, file_argv, shell_argv
from kanade.core import exitcodes, subjects
from kanade.core.gates import GateSkip, KvView, check_deadline, evaluate_gates
from kanade.core.ids import result_id_for
from kanade.core.instants import Clock, system_clock
from kanade.core.models.wire import Command, Result, WireDecodeError, decode_command, encode
from kanade.core.msgids import result_msg_id, started_msg_id
from kanade.core.results import (
    event_started,
    output_object_name,
    run_result,
    skipped_result,
    unknown_outcome_result,
)
from kanade.core.runas import choose_account

if TYPE_CHECKING:  # loaded when a script first runs (idle RSS)
    from kanade.agent.liveout.publisher import LiveTap

log = logging.getLogger("kanade.agent")

# How a script is executed. Real agents run subprocesses; the swarm simulator
# swaps in an instant stub with the same signature.
Runner = Callable[[Command, list[str], "RunContext"], Awaitable[ProcessOutcome]]


@dataclass
class RunContext:
    kill: asyncio.Event
    spool_dir: Path
    spool_name: str
    cap_bytes: int
    clock: Clock = system_clock
    account: accounts.Account | None = None  # run_as: user — start the script as this one
    tree: ProcessTree | None = None  # what holds this attempt's processes (a fresh one each)
    live: LiveTap | None = None  # where its output goes as it is written (SPEC §4.12)


@dataclass
class Tracked:
    """A command admitted and not finished yet: queued for a slot, or running."""

    cmd: Command
    refusal: str | None = None  # why intake refused it (SPEC §8.2 gate 5), if it did
    invalid: str | None = None  # which field is out of bounds (cmd is then a stand-in)
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
        clock=ctx.clock,
        account=ctx.account,
        tree=ctx.tree,
        live=ctx.live.feed if ctx.live is not None else None,
    )


async def _interruptible_wait(seconds: float, kill: asyncio.Event) -> bool:
    """Wait ``seconds``; True if a kill arrived meanwhile."""
    if seconds <= 0:
        return kill.is_set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(kill.wait(), timeout=seconds)
    return kill.is_set()


class Executor:
    """Runs each admitted command once and records its result (ledger, then outbox)."""

    def __init__(
        self,
        *,
        pc_id: str,
        ledger: Ledger,
        outbox: Outbox,
        scripts: ScriptCache,
        spool_dir: Path,
        max_output_bytes: int,
        max_local_concurrent: int,
        runner: Runner,
        kv_view: Callable[[], KvView],
        connection: Callable[[], Client | None],
        spawn: Callable[[Awaitable[Any]], asyncio.Task[Any]],
        clock: Clock = system_clock,
        disk: DiskHealth | None = None,
        containment: Containment | None = None,
        live: Callable[[str], LiveTap | None] | None = None,
    ) -> None:
        """``live``: a tap for one run of an exec, its output published while watched."""
        self.pc_id = pc_id
        self.disk = disk
        self.containment = containment
        self.live = live
        self._clock = clock
        self.ledger = ledger
        self.outbox = outbox
        self.scripts = scripts
        self.spool_dir = spool_dir
        self._max_output_bytes = max_output_bytes
        self._runner = runner
        self._kv_view = kv_view
        self._connection = connection
        self._spawn = spawn
        self.limiter = FifoLimiter(max_local_concurrent)
        self.kills = KillMemory()
        self._tracked: dict[str, Tracked] = {}
        self._by_exec: dict[str, set[str]] = defaultdict(set)
        self._tasks: set[asyncio.Task[Any]] = set()
        # Told of every result the agent records, as (command, result), after it is queued.
        self.on_finished: list[Callable[[Command, Result], None]] = []

    # --- load ---------------------------------------------------------------------------------
    @property
    def queue_length(self) -> int:
        return sum(1 for t in self._tracked.values() if not t.started)

    @property
    def running(self) -> int:
        return sum(1 for t in self._tracked.values() if t.started)

    def in_flight(self, request_id: str) -> bool:
        return request_id in self._tracked

    # --- crash recovery -----------------------------------------------------------------------
    def recover(self) -> None:
        """Settle what the ledger holds from an earlier run (see the module docstring)."""
        now = self._clock()
        # Output spooled by a run that died with the agent (kill -9) and never
        # reached the outbox: nothing will ever upload it.
        keep = self.outbox.attachment_paths()
        for spooled in self.spool_dir.iterdir():
            if str(spooled) not in keep:
                remove(spooled)
        for entry in self.ledger.in_state("launching"):
            try:
                cmd, _ = decode_command(entry.command.encode())
            except WireDecodeError as exc:
                self._settle_unreadable(entry.request_id, exc)
                continue
            result_id = result_id_for(entry.request_id, self.pc_id)
            if self.containment is not None:
                # "Outcome unknown" must be the truth: nothing of the script runs on.
                killed = self.containment.end_leftovers(result_id)
                if killed:
                    log.warning(
                        "killed %d process(es) of %s left by the previous run of the agent",
                        killed,
                        entry.request_id,
                    )
            queued = self.outbox.find(result_msg_id(result_id))
            if queued is not None:
                # It finished and its result reached the outbox; only the ledger line was
                # still waiting for the disk when the agent died.
                self.ledger.mark_finished(entry.request_id, queued.data.decode(), time.time())
                self.ledger.mark_queued(entry.request_id)
                continue
            launched = datetime.fromtimestamp(entry.updated_at, UTC)
            log.warning(
                "command %s was running when the agent stopped: outcome unknown", entry.request_id
            )
            self.finish(
                cmd,
                unknown_outcome_result(
                    cmd, self.pc_id, launched_at=launched, now=now, agent_version=__version__
                ),
            )
        if self.containment is not None:
            self.containment.sweep()
        for entry in self.ledger.in_state("finished"):
            if not entry.queued and entry.result is not None:
                result_id = result_id_for(entry.request_id, self.pc_id)
                msg_id = result_msg_id(result_id)
                if not self.outbox.contains_msg_id(msg_id):
                    self.outbox.put(
                        Envelope(
                            subjects.result_subject(self.pc_id),
                            msg_id,
                            entry.result.encode(),
                            on_settled=functools.partial(self.ledger.mark_queued, entry.request_id),
                        )
                    )
                else:
                    self.ledger.mark_queued(entry.request_id)
        for entry in self.ledger.in_state("pending"):
            try:
                cmd, invalid = decode_command(entry.command.encode())
            except WireDecodeError as exc:
                self._settle_unreadable(entry.request_id, exc)
                continue
            self.start(cmd, refusal=entry.extra.get("refused"), invalid=invalid)

    def _settle_unreadable(self, request_id: str, exc: Exception) -> None:
        """A ledger entry whose command no longer decodes (not even its ids): nothing can
        be reported for it, but its request_id stays admitted, so it never runs."""
        log.error("ledger entry %s is unreadable; settled without a result: %s", request_id, exc)
        self.ledger.mark_finished(request_id, "", time.time())
        self.ledger.mark_queued(request_id)

    # --- kills --------------------------------------------------------------------------------
    def kill_exec(self, exec_id: str) -> None:
        """End every running or queued command of ``exec_id`` on this agent.

        The exec id is also remembered for a while: a command of that exec that was
        already on its way (fetched, not yet admitted) must not start after the kill.
        """
        self.kills.remember(exec_id)
        for request_id in list(self._by_exec.get(exec_id, ())):
            tracked = self._tracked.get(request_id)
            if tracked is not None:
                log.info("killing %s (exec %s) by remote request", request_id, exec_id)
                tracked.kill.set()

    async def stop(self, timeout: float) -> None:
        """End every script still running and wait (up to ``timeout``) for their results."""
        for tracked in self._tracked.values():
            tracked.kill_reason = "killed because the agent was stopped"
            tracked.kill.set()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    # --- running ------------------------------------------------------------------------------
    def start(
        self, cmd: Command, *, refusal: str | None = None, invalid: str | None = None
    ) -> None:
        """Run an admitted command (in its own task); ``refusal``: intake found its signature
        or recipient wrong, so the gates end it with a 123 result; ``invalid``: a field of
        it is out of bounds (``cmd`` is a stand-in), so they end it with a 122 result."""
        tracked = Tracked(cmd, refusal, invalid)
        if cmd.exec_id in self.kills:
            tracked.kill.set()  # killed before it got here: reported as cancelled
        self._tracked[cmd.request_id] = tracked
        self._by_exec[cmd.exec_id].add(cmd.request_id)
        task = self._spawn(self._execute(tracked))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, tracked: Tracked) -> None:
        cmd = tracked.cmd
        try:
            if cmd.urgent:
                await self._execute_admitted(tracked)
            elif await self._wait_for_slot(tracked):
                try:
                    await self._execute_admitted(tracked)
                finally:
                    self.limiter.release()
            else:
                self.skip(cmd, exitcodes.KILLED, "cancelled by remote kill while queued")
        finally:
            self._tracked.pop(cmd.request_id, None)
            ids = self._by_exec.get(cmd.exec_id)
            if ids is not None:
                ids.discard(cmd.request_id)
                if not ids:
                    self._by_exec.pop(cmd.exec_id, None)

    async def _wait_for_slot(self, tracked: Tracked) -> bool:
        """Queue for a slot under max_local_concurrent. False when a kill arrives first:
        a queued command is cancelled at once, not when it reaches the front."""
        if self.limiter.try_acquire():
            return True  # a free slot: no queueing, no futures
        acquire = asyncio.ensure_future(self.limiter.acquire())
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

    def skip_disk_full(self, cmd: Command) -> None:
        """Refuse ``cmd`` because the data directory is full (SPEC §7): a skipped result that
        says so, held in memory like any result until it can be written or sent."""
        reason = self.disk.refusal() if self.disk is not None else "refused: the disk is full"
        self.skip(cmd, exitcodes.UNSUPPORTED, reason)

    def skip(self, cmd: Command, code: int, reason: str) -> None:
        self.finish(
            cmd,
            skipped_result(
                cmd,
                self.pc_id,
                exit_code=code,
                reason=reason,
                now=self._clock(),
                agent_version=__version__,
            ),
        )

    async def _execute_admitted(self, tracked: Tracked) -> None:
        cmd = tracked.cmd
        script = cmd.script or ""
        argv = shell_argv(cmd.shell, script)
        skip = evaluate_gates(
            cmd,
            now=self._clock(),
            view=self._kv_view(),
            shell_available=argv is not None,
            refusal=tracked.refusal,
            invalid=tracked.invalid,
        )
        if skip is not None:
            self.skip(cmd, skip.exit_code, skip.reason)
            return
        chosen = choose_account(cmd, accounts.facts(), accounts.exists)
        if isinstance(chosen, GateSkip):
            self.skip(cmd, chosen.exit_code, chosen.reason)
            return
        if cmd.script_object:
            try:
                script = await self.scripts.resolve(
                    self._connection(), cmd.script_object, cmd.script_sha256
                )
            except ScriptRejected as exc:
                self.skip(cmd, exitcodes.REFUSED, f"refused: {exc}")
                return
            except ScriptUnavailable as exc:
                self.skip(cmd, exitcodes.UNSUPPORTED, str(exc))
                return
            argv = shell_argv(cmd.shell, script)
        assert argv is not None
        jitter = random.uniform(0, cmd.jitter_s) if cmd.jitter_s > 0 else 0.0
        if await _interruptible_wait(jitter, tracked.kill):
            self.skip(cmd, exitcodes.KILLED, "cancelled by remote kill before it started")
            return
        late = check_deadline(cmd.deadline_at, self._clock())
        if late is not None:
            self.skip(cmd, late.exit_code, late.reason)
            return
        if self.disk is not None and self.disk.full:
            self.skip_disk_full(cmd)
            return
        script_file: Path | None = None
        if len(script.encode()) > ARGV_SCRIPT_MAX:
            # Too long for a command line: the shell reads it from a file only the
            # account that runs it can read, removed when the run ends.
            try:
                script_file, argv = _script_file(
                    cmd, script, accounts.account(chosen) if chosen is not None else None
                )
            except OSError as exc:  # a full or read-only temp dir: say so, never run half
                self.skip(cmd, exitcodes.UNSUPPORTED, f"cannot write the script file: {exc}")
                return
            if argv is None:  # cannot happen: the shell was found above
                self.skip(cmd, exitcodes.UNSUPPORTED, f"shell {cmd.shell!r} not found")
                return
        try:
            await self._run_admitted(tracked, argv, chosen)
        finally:
            if script_file is not None:
                with contextlib.suppress(OSError):
                    script_file.unlink()
                    script_file.parent.rmdir()

    async def _run_admitted(self, tracked: Tracked, argv: list[str], chosen: Any) -> None:
        cmd = tracked.cmd
        # From here the script may run: a crash now must never lead to a re-run.
        try:
            self.ledger.mark_launching(cmd.request_id, time.time())
        except OSError:  # the disk is full: it must not run unrecorded
            self.skip_disk_full(cmd)
            return
        tracked.started = True
        result_id = result_id_for(cmd.request_id, self.pc_id)
        started_at = self._clock()
        started = event_started(cmd, self.pc_id, started_at)
        self.outbox.put(
            Envelope(
                subjects.started_subject(self.pc_id),
                started_msg_id(result_id),
                encode(started),
                # mark_launching above is the fsync'd record of the start.
                durable=False,
            )
        )
        ctx = RunContext(
            tracked.kill,
            self.spool_dir,
            result_id,
            min(cmd.max_output_bytes, self._max_output_bytes),
            self._clock,
            accounts.account(chosen) if chosen is not None else None,
        )
        retry_max = cmd.retry.max if cmd.retry else 0
        attempts = 0
        notes: list[str] = []
        ctx.live = self.live(cmd.exec_id) if self.live is not None else None
        try:
            while True:
                attempts += 1
                if self.containment is not None:
                    ctx.tree = self.containment.tree(result_id)
                if ctx.live is not None:
                    ctx.live.attempt = attempts
                outcome = await self._runner(cmd, argv, ctx)
                if outcome.exit_code == 0 or outcome.killed or attempts > retry_max:
                    break
                backoff = cmd.retry.backoff_s if cmd.retry else 0.0
                notes.append(f"attempt {attempts} exited {outcome.exit_code}")
                if await _interruptible_wait(backoff, tracked.kill):
                    notes.append("retry interrupted by remote kill")
                    break
        finally:
            if ctx.live is not None:
                ctx.live.close()
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
                digest = await asyncio.to_thread(_file_sha256, cap.spool)
                name = output_object_name(result_id, stream, digest)
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
        self.finish(cmd, result, attachments)

    # --- results ------------------------------------------------------------------------------
    def finish(
        self, cmd: Command, result: Result, attachments: list[Attachment] | None = None
    ) -> None:
        """Record a result: in the ledger, then in the outbox, then tell the listeners.

        Never fails for a full disk: what the disk refuses is held in memory — the ledger
        line until it can be written, the message until it is written or published — and
        the ledger says "queued" only once the message is safe (on disk or acknowledged)."""
        payload = encode(result)
        request_id = cmd.request_id
        known = self.ledger.get(request_id) is not None
        journaled = known and self.ledger.mark_finished(request_id, payload.decode(), time.time())
        self.outbox.put(
            Envelope(
                subjects.result_subject(self.pc_id),
                result_msg_id(result.result_id),
                payload,
                attachments or [],
                on_settled=functools.partial(self.ledger.mark_queued, request_id)
                if known
                else None,
                # The ledger's fsync'd "finished" line holds the result: the outbox copy
                # needs no fsync of its own (a restart re-queues what was never "queued",
                # and that is said only once the broker has it).
                durable=not journaled,
            )
        )
        for callback in self.on_finished:
            try:
                callback(cmd, result)
            except Exception:
                log.exception("on_finished callback failed for %s", cmd.request_id)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _script_file(
    cmd: Command, script: str, account: accounts.Account | None
) -> tuple[Path, list[str] | None]:
    """Write ``script`` to a fresh private directory (0700, the file 0600; owned by
    ``account`` when it runs as another user) and the argv that runs it from there."""
    base = Path(os.environ.get("TMPDIR") or os.environ.get("TEMP") or "/tmp")
    directory = base / f"kanade-script-{os.urandom(8).hex()}"
    directory.mkdir(mode=0o700)  # a new name: never an existing (planted) directory
    path = directory / f"script{FILE_SUFFIX.get(cmd.shell, '')}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        fh.write(script)
    if account is not None:
        os.chown(directory, account.uid, account.gid)
        os.chown(path, account.uid, account.gid)
    return path, file_argv(cmd.shell, str(path))
