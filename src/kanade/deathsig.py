"""Linux: a child asks the kernel for a signal the moment its parent dies (PR_SET_PDEATHSIG).

Used for an agent's scripts (SIGKILL: the rest of a dead agent's tree is ended when it
restarts, docs/agent.md "Process trees") and for ``kanade up``'s children (SIGTERM: a
``kill -9`` of the supervisor must not leave a broker, backend and agents holding the
ports). The signal is sent when the parent *thread* that forked exits, so callers spawn
from their main thread. ``ctypes`` is loaded on first use, never in an idle agent
(SPEC §10.2).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Any:
    import ctypes  # resolved in the parent, before any fork: the child only calls it

    return ctypes.CDLL(None, use_errno=True).prctl


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
