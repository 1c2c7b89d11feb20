"""Run one script as a subprocess tree: capped capture, timeout and remote kill.

The script's tree is held by a :class:`~kanade.agent.containment.ProcessTree` (its process
group at least; a cgroup, tracked descendants or a job object where available), so a
timeout or a kill ends all of it, grandchildren that called ``setsid`` included, and the
result is reported only once nothing of it is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from kanade.agent.accounts import Account
from kanade.agent.containment.tree import ProcessTree, until_empty
from kanade.agent.durable.diskhealth import describe as describe_os_error
from kanade.core.instants import Clock, system_clock

log = logging.getLogger("kanade.agent")

LiveFeed = Callable[[str, bytes], None]
"""Told every piece of output as it is read: ``(stream, bytes)`` (live output, SPEC §4.12)."""

_READ_CHUNK = 64 * 1024
_STREAM_LIMIT = 64 * 1024  # asyncio's default StreamReader buffer limit
# After the main process exits, a daemonised grandchild that escaped the group
# could keep the pipes open forever; stop reading after this long.
_PIPE_GRACE_S = 2.0
# Time a tree gets between SIGTERM and SIGKILL.
_TERM_GRACE_S = 2.0
# Time SIGKILLed processes get to be gone before the result is reported anyway.
_KILL_WAIT_S = 2.0


@dataclass
class Capture:
    """The inline head of one output stream, plus where the rest was spooled."""

    head: bytes
    total: int
    spool: Path | None


@dataclass
class ProcessOutcome:
    exit_code: int
    stdout: Capture
    stderr: Capture
    started_at: datetime
    finished_at: datetime
    note: str | None
    killed: bool = False
    timed_out: bool = False


class _Spooler:
    """Capture state of one stream, kept outside the reading task so that what was read
    survives the task being cancelled (a background child holding the pipe open)."""

    def __init__(
        self, cap: int, spool_path: Path, live: Callable[[bytes], None] | None = None
    ) -> None:
        self.cap = cap
        self.spool_path = spool_path
        self.live = live
        self.head = bytearray()
        self.total = 0
        self._spool: BinaryIO | None = None
        self._spooled = False
        # Why the spool was given up (the disk is full): the rest is read and dropped, so
        # the script never blocks on a pipe nobody reads.
        self.lost: str | None = None

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.live is not None:
            try:
                self.live(chunk)
            except Exception:  # live output is best effort: the capture must go on
                log.exception("live output feed failed; no more live output for this run")
                self.live = None
        if self._spool is None and len(self.head) + len(chunk) <= self.cap:
            self.head += chunk
            return
        if self.lost is not None:
            return
        try:
            if self._spool is None:
                self._spool = open(self.spool_path, "wb")  # noqa: SIM115 - closed in close()
                self._spooled = True
                self._spool.write(self.head)
                self.head += chunk[: max(0, self.cap - len(self.head))]
            self._spool.write(chunk)
        except OSError as exc:
            self.head += chunk[: max(0, self.cap - len(self.head))]
            self._give_up(exc)

    def _give_up(self, exc: OSError) -> None:
        self.lost = describe_os_error(exc)
        with contextlib.suppress(OSError):
            if self._spool is not None:
                self._spool.close()
        self._spool = None
        self._spooled = False
        with contextlib.suppress(OSError):
            self.spool_path.unlink()  # a partial copy would pass for the whole output

    def close(self) -> None:
        if self._spool is not None:
            try:
                self._spool.close()
            except OSError as exc:
                self._spool = None
                self._give_up(exc)
            self._spool = None

    def capture(self) -> Capture:
        self.close()
        return Capture(bytes(self.head), self.total, self.spool_path if self._spooled else None)


def _stream(live: LiveFeed | None, name: str) -> Callable[[bytes], None] | None:
    if live is None:
        return None
    return lambda chunk: live(name, chunk)


async def _capture(stream: asyncio.StreamReader, state: _Spooler) -> None:
    """Keep the first ``cap`` bytes inline; once over the cap, spool the *full* stream."""
    try:
        while True:
            chunk = await stream.read(_READ_CHUNK)
            if not chunk:
                break
            state.feed(chunk)
    finally:
        state.close()


def _close_pipes(proc: asyncio.subprocess.Process) -> None:
    """Stop reading pipes that a background child still holds open (it gets EPIPE
    instead of blocking forever on a full pipe nobody reads)."""
    transport = getattr(proc, "_transport", None)
    if transport is None:
        return
    for fd in (1, 2):
        pipe = transport.get_pipe_transport(fd)
        if pipe is not None:
            with contextlib.suppress(Exception):
                pipe.close()


class _ExitAwareProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Tells when the process itself has exited.

    ``Process.wait()`` only returns once the process has exited AND every pipe is
    closed, so a background child that inherited stdout (a daemon the script
    started) would make a script that exited long ago look like it is still
    running, until the timeout kills the daemon and reports -1.
    """

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


async def _spawn(
    argv: list[str], **kwargs: Any
) -> tuple[asyncio.subprocess.Process, _ExitAwareProtocol]:
    """``asyncio.create_subprocess_exec`` with a protocol that reports the exit itself."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _ExitAwareProtocol(_STREAM_LIMIT, loop), *argv, **kwargs
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol


async def _wait_exit(protocol: _ExitAwareProtocol) -> None:
    # Shielded: cancelling a waiter must not cancel the protocol's own future.
    await asyncio.shield(protocol.exited)


async def _end_tree(tree: ProcessTree) -> None:
    """SIGTERM to the whole tree, a grace period for it to clean up, then SIGKILL to
    whatever is left — always: the shell may have exited on SIGTERM while a child that
    ignores it lives on — and wait until it is gone."""
    tree.signal(signal.SIGTERM)
    await until_empty(tree, _TERM_GRACE_S)
    tree.kill()
    await until_empty(tree, _KILL_WAIT_S)


async def run_process(
    argv: list[str],
    *,
    timeout_s: float,
    cap_bytes: int,
    spool_dir: Path,
    spool_name: str,
    kill: asyncio.Event,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    on_started: asyncio.Future[datetime] | None = None,
    clock: Clock = system_clock,
    account: Account | None = None,
    tree: ProcessTree | None = None,
    live: LiveFeed | None = None,
) -> ProcessOutcome:
    """Run ``argv`` to completion, timeout or kill; never raises for script failures.
    ``account``: start it as that user (run_as: user), in its home unless ``cwd`` says.
    ``tree``: what holds its processes (default: its process group). ``live``: told each
    piece of output as it is read."""
    tree = tree or ProcessTree(spool_name)
    full_env = {**os.environ, **(env or {}), **tree.environment()}
    kwargs: dict[str, object] = dict(tree.spawn_options())
    if account is not None:
        full_env = {**os.environ, **account.environment(), **(env or {}), **tree.environment()}
        kwargs.update(account.spawn_options())
        cwd = cwd or account.workdir
    started_at = clock()
    try:
        proc, protocol = await _spawn(
            tree.command_line(argv),
            stdin=tree.stdin(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
            cwd=cwd or None,
            **kwargs,
        )
    except (OSError, ValueError) as exc:
        now = clock()
        msg = f"could not start the script: {exc}".encode()
        if on_started is not None and not on_started.done():
            on_started.set_result(started_at)
        return ProcessOutcome(
            exit_code=127 if isinstance(exc, FileNotFoundError) else 126,
            stdout=Capture(b"", 0, None),
            stderr=Capture(msg, len(msg), None),
            started_at=started_at,
            finished_at=now,
            note=f"could not start: {exc}",
        )
    try:
        await tree.started(proc)
    except BaseException:  # cancelled while letting it go (the agent stops): end it
        tree.kill()
        tree.close()
        raise
    if on_started is not None and not on_started.done():
        on_started.set_result(started_at)
    assert proc.stdout is not None and proc.stderr is not None
    out_state = _Spooler(cap_bytes, spool_dir / f"{spool_name}.stdout", _stream(live, "stdout"))
    err_state = _Spooler(cap_bytes, spool_dir / f"{spool_name}.stderr", _stream(live, "stderr"))
    out_task = asyncio.create_task(_capture(proc.stdout, out_state))
    err_task = asyncio.create_task(_capture(proc.stderr, err_state))
    wait_task = asyncio.create_task(_wait_exit(protocol))
    kill_task = asyncio.create_task(kill.wait())
    note: str | None = None
    killed = timed_out = False
    try:
        done, _ = await asyncio.wait(
            {wait_task, kill_task}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if wait_task not in done:
            if kill_task in done:
                killed = True
                note = "killed by remote request"
            else:
                timed_out = True
                note = f"timeout after {timeout_s:g}s"
            await _end_tree(tree)
            await wait_task
        # A script that exits normally may leave background children on purpose
        # (starting a daemon); they are not ours to kill. _PIPE_GRACE_S bounds
        # how long such a child can hold the output pipes open.
    finally:
        kill_task.cancel()
        if not wait_task.done():
            tree.kill()
            wait_task.cancel()
        tree.close()
    read_done, read_pending = await asyncio.wait({out_task, err_task}, timeout=_PIPE_GRACE_S)
    if read_pending:
        # Keep what was read so far: only what the background child writes from now
        # on is lost, and the note says so.
        for t in read_pending:
            t.cancel()
        await asyncio.gather(*read_pending, return_exceptions=True)
        _close_pipes(proc)
        held = " and ".join(
            n for n, t in (("stdout", out_task), ("stderr", err_task)) if t in read_pending
        )
        pipe_note = (
            f"stopped reading {held} {_PIPE_GRACE_S:g}s after the script exited: "
            "a background process kept it open"
        )
        note = f"{note}; {pipe_note}" if note else pipe_note
    for name, t in (("stdout", out_task), ("stderr", err_task)):
        # A read error must not lose the result: keep what was captured, say what went wrong.
        error = t.exception() if t in read_done else None
        if error is not None:
            fail_note = f"capture of {name} failed: {error!r}"
            note = f"{note}; {fail_note}" if note else fail_note
    stdout = out_state.capture()
    stderr = err_state.capture()
    for name, state in (("stdout", out_state), ("stderr", err_state)):
        if state.lost is not None:
            lost_note = (
                f"{name} beyond the first {len(state.head)} of {state.total} bytes was lost: "
                f"it could not be spooled ({state.lost})"
            )
            note = f"{note}; {lost_note}" if note else lost_note
    exit_code = -1 if killed or timed_out or proc.returncode is None else proc.returncode
    return ProcessOutcome(
        exit_code=exit_code,
        stdout=stdout,
        stderr=stderr,
        started_at=started_at,
        finished_at=clock(),
        note=note,
        killed=killed,
        timed_out=timed_out,
    )
