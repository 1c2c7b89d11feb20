"""Linux: a child asks the kernel for a signal the moment its parent dies (PR_SET_PDEATHSIG).

Used for an agent's scripts (SIGKILL: the rest of a dead agent's tree is ended when it
restarts, docs/agent.md "Process trees") and for ``kanade up``'s children (SIGTERM: a
``kill -9`` of the supervisor must not leave a broker, backend and agents holding the
ports). The signal is sent when the parent *thread* that forked exits, so callers spawn
from their main thread. ``ctypes`` is loaded on first use, never in an idle agent
(SPEC §10.2).

Two ways to ask: :func:`death_signal_argv`, a prefix that makes the child ask itself
(util-linux ``setpriv --pdeathsig``, then exec of the real command), or
:func:`die_with_parent`, a ``preexec_fn``. The prefix is preferred for scripts: a
``preexec_fn`` makes ``subprocess`` fork the whole agent instead of ``vfork``-ing it, which
cost each script start about 8 ms of CPU and 15 ms of wall time in an agent-sized process
— a third of an agent's work per exec (docs/performance.md, "Script start").
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Any:
    import ctypes  # resolved in the parent, before any fork: the child only calls it

    return ctypes.CDLL(None, use_errno=True).prctl


@functools.cache
def _setpriv() -> str | None:
    """``setpriv`` if it is here and knows ``--pdeathsig`` (util-linux 2.33, 2018)."""
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        probe = subprocess.run(
            [path, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", ":"],
            capture_output=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return path if probe.returncode == 0 else None


def death_signal_argv(sig: int) -> list[str] | None:
    """A command-line prefix after which the command runs with ``sig`` requested for the
    parent's death (None: not available here; use :func:`die_with_parent`). The request
    is kept across the exec of the command (it is dropped only for set-user-ID programs).
    Unlike the ``preexec_fn`` it cannot see whether the parent already died in the
    instant between fork and request: what is left then is ended with the rest of a dead
    agent's tree when it restarts (docs/agent.md, "Process trees")."""
    if not sys.platform.startswith("linux"):
        return None
    path = _setpriv()
    if path is None:
        return None
    return [path, "--pdeathsig", signal.Signals(sig).name.removeprefix("SIG"), "--"]


def die_with_parent(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking for ``sig`` when this process dies (None where the OS has
    no such mechanism)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = _prctl()
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        # Runs in the child between fork and exec: no imports, no locks, no allocation
        # to speak of.
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return preexec
