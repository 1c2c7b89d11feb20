"""Linux: a script's first process gets SIGKILL the moment the agent dies (PR_SET_PDEATHSIG).

The rest of a dead agent's tree is ended when it restarts (docs/agent.md, "Process trees");
this makes the script itself stop at once, not at the restart. ``ctypes`` is loaded when the
first script runs, never in an idle agent (SPEC §10.2).
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Any:
    import ctypes  # resolved in the agent, before any fork: the child only calls it

    return ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking for SIGKILL when the agent dies (None where unavailable)."""
    try:
        prctl = _prctl()
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        # Runs in the child between fork and exec: no imports, no allocation to speak of.
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the agent died before the request took effect
            os._exit(1)

    return preexec
