"""One script run's processes, as the executor sees them: how to start the script so its
tree stays findable, and how to signal, kill and wait out all of it.

:class:`ProcessTree` is the process group (POSIX) every kind builds on; the kinds that also
catch what leaves the group — a cgroup, tracked descendants, a Windows job object — live in
their own modules. Which one runs where: docs/agent.md, "Process trees".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from typing import Any

IS_WINDOWS = sys.platform == "win32"

RUN_ID_ENV = "KANADE_RESULT_ID"
"""Set in every script's environment (its result id): inherited by everything it starts, so
a process that left the tree can still be recognised as the run's own."""


class ProcessTree:
    """The script's own process group (POSIX: a new session; Windows: a new process group).

    A grandchild that calls ``setsid`` leaves it; subclasses catch those too.
    """

    kind = "process group"

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.pid: int | None = None

    # --- starting ------------------------------------------------------------------------------
    def argv(self, argv: list[str]) -> list[str]:
        """The command line to spawn (a kind may wrap the script's)."""
        return argv

    def command_line(self, argv: list[str]) -> list[str]:
        """What is spawned: the kind's command line, behind the request to die with the
        agent where that is a command-line prefix (see :meth:`spawn_options`)."""
        return [*(_death_prefix() or ()), *self.argv(argv)]

    def stdin(self) -> int:
        return asyncio.subprocess.DEVNULL

    def spawn_options(self) -> dict[str, Any]:
        if IS_WINDOWS:
            return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
        options: dict[str, Any] = {"start_new_session": True}
        if sys.platform.startswith("linux") and _death_prefix() is None:
            from kanade.deathsig import die_with_parent

            # Only without the prefix: a preexec_fn forks the whole agent (no vfork).
            options["preexec_fn"] = die_with_parent(signal.SIGKILL)
        return options

    def environment(self) -> dict[str, str]:
        return {RUN_ID_ENV: self.run_id}

    async def started(self, proc: asyncio.subprocess.Process) -> None:
        """The script's first process exists (and, for a wrapping kind, waits for us)."""
        self.pid = proc.pid

    # --- ending --------------------------------------------------------------------------------
    def signal(self, sig: int) -> None:
        """Send ``sig`` to every process of the tree."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            if IS_WINDOWS:
                os.kill(self.pid, signal.SIGTERM)  # TerminateProcess; the job ends the rest
            else:
                os.killpg(self.pid, sig)

    def kill(self) -> None:
        """End every process of the tree now (SIGKILL, TerminateJobObject)."""
        if IS_WINDOWS and self.pid is not None:
            subprocess.run(
                ["taskkill", "/T", "/F", "/PID", str(self.pid)], capture_output=True, check=False
            )
            return
        self.signal(signal.SIGKILL)

    def empty(self) -> bool:
        """No process of the tree is left."""
        if self.pid is None or IS_WINDOWS:
            return True
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def close(self) -> None:
        """The run is over. What a script that exited normally left running (a daemon it
        started on purpose) is not killed."""


def _death_prefix() -> list[str] | None:
    if not sys.platform.startswith("linux"):
        return None
    from kanade.deathsig import death_signal_argv

    return death_signal_argv(signal.SIGKILL)


async def until_empty(tree: ProcessTree, timeout: float, *, poll: float = 0.02) -> bool:
    """Wait (up to ``timeout``) until no process of ``tree`` is left."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while not tree.empty():
        if loop.time() >= give_up:
            return False
        await asyncio.sleep(poll)
    return True
