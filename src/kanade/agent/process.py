"""Run one script as a subprocess tree: capped capture, timeout and remote kill.

The script runs in its own process group (POSIX session / Windows process
group) so a timeout or a kill ends the whole tree, grandchildren included,
not just the shell we started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

IS_WINDOWS = sys.platform == "win32"
_READ_CHUNK = 64 * 1024
# After the main process exits, a daemonised grandchild that escaped the group
# could keep the pipes open forever; stop reading after this long.
_PIPE_GRACE_S = 2.0
# Time a tree gets between SIGTERM and SIGKILL.
_TERM_GRACE_S = 2.0


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


async def _capture(stream: asyncio.StreamReader, cap: int, spool_path: Path) -> Capture:
    """Keep the first ``cap`` bytes inline; once over the cap, spool the *full* stream."""
    head = bytearray()
    total = 0
    spool = None
    try:
        while True:
            chunk = await stream.read(_READ_CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if spool is None and len(head) + len(chunk) <= cap:
                head += chunk
                continue
            if spool is None:
                spool = open(spool_path, "wb")  # noqa: SIM115 - closed in finally
                spool.write(head)
                head += chunk[: max(0, cap - len(head))]
            spool.write(chunk)
    finally:
        if spool is not None:
            spool.close()
    return Capture(bytes(head), total, spool_path if spool is not None else None)


def _signal_tree(proc: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        if IS_WINDOWS:
            if sig == signal.SIGTERM:
                proc.terminate()
            else:
                subprocess.run(
                    ["taskkill", "/T", "/F", "/PID", str(proc.pid)],
                    capture_output=True,
                    check=False,
                )
        else:
            os.killpg(proc.pid, sig)


async def _end_tree(proc: asyncio.subprocess.Process) -> None:
    _signal_tree(proc, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), _TERM_GRACE_S)
    except TimeoutError:
        pass
    # Always SIGKILL the group too: the shell may have exited on SIGTERM while
    # a child ignoring it lives on.
    _signal_tree(proc, signal.SIGKILL)


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
) -> ProcessOutcome:
    """Run ``argv`` to completion, timeout or kill; never raises for script failures."""
    full_env = {**os.environ, **(env or {})}
    kwargs: dict[str, object] = {}
    if IS_WINDOWS:
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
    else:
        kwargs["start_new_session"] = True
    started_at = datetime.now(UTC)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
            cwd=cwd or None,
            **kwargs,  # type: ignore[arg-type]
        )
    except (OSError, ValueError) as exc:
        now = datetime.now(UTC)
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
    if on_started is not None and not on_started.done():
        on_started.set_result(started_at)
    assert proc.stdout is not None and proc.stderr is not None
    out_task = asyncio.create_task(
        _capture(proc.stdout, cap_bytes, spool_dir / f"{spool_name}.stdout")
    )
    err_task = asyncio.create_task(
        _capture(proc.stderr, cap_bytes, spool_dir / f"{spool_name}.stderr")
    )
    wait_task = asyncio.create_task(proc.wait())
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
            await _end_tree(proc)
            await wait_task
        # A script that exits normally may leave background children on purpose
        # (starting a daemon); they are not ours to kill. _PIPE_GRACE_S bounds
        # how long such a child can hold the output pipes open.
    finally:
        kill_task.cancel()
        if not wait_task.done():
            _signal_tree(proc, signal.SIGKILL)
            wait_task.cancel()
    done, pending = await asyncio.wait({out_task, err_task}, timeout=_PIPE_GRACE_S)
    for t in pending:
        t.cancel()
    stdout = out_task.result() if out_task in done else Capture(b"", 0, None)
    stderr = err_task.result() if err_task in done else Capture(b"", 0, None)
    exit_code = -1 if (killed or timed_out) else (proc.returncode if proc.returncode is not None else -1)
    return ProcessOutcome(
        exit_code=exit_code,
        stdout=stdout,
        stderr=stderr,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        note=note,
        killed=killed,
        timed_out=timed_out,
    )
