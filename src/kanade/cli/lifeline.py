"""What ties ``kanade up``'s children to it, and keeps two of it off one data dir.

* **Children die with the supervisor.** A ``kill -9`` of ``kanade up`` runs no clean-up
  code, and its broker, backend and agents would keep running and holding the ports. On
  Linux each child asks the kernel for SIGTERM when its parent goes
  (``PR_SET_PDEATHSIG``, set between fork and exec); elsewhere there is no such
  mechanism and the supervisor's own signal handlers are what stops them.
* **One supervisor per data dir.** Two would share the JetStream store and the SQLite file
  and corrupt both; an advisory lock on ``<data dir>/kanade-up.lock`` (held for the
  supervisor's lifetime, released by the OS however it ends) refuses the second.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

LOCK_FILE = "kanade-up.lock"
_PR_SET_PDEATHSIG = 1


class DataDirBusy(RuntimeError):
    """Another ``kanade up`` holds the data dir."""


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGTERM when this process dies
    (Linux), or None where the OS has no such thing."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        # Resolved before the fork: nothing here may take a lock another thread held.
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return preexec


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold ``data_dir``'s lock for as long as the returned file stays open; raise
    :class:`DataDirBusy` naming the holder when another process has it."""
    path = data_dir / LOCK_FILE
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until the process ends
    try:
        _lock(fh)
    except OSError:
        fh.seek(0)
        holder = fh.read().strip() or "unknown"
        fh.close()
        raise DataDirBusy(
            f"another kanade up (pid {holder}) is using {data_dir}; stop it first, or pass "
            "another --data-dir"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def _lock(fh: IO[str]) -> None:
    if sys.platform == "win32":
        import msvcrt

        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def release(fh: IO[str]) -> None:
    with contextlib.suppress(OSError):
        fh.close()
