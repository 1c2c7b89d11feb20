"""What ties ``kanade up``'s children to it, and keeps two of it off one data dir.

* **Children die with the supervisor** (:mod:`kanade.deathsig`, Linux); elsewhere the
  supervisor's own signal handlers are what stops them.
* **One supervisor per data dir.** Two would share the JetStream store and the SQLite file
  and corrupt both; an advisory lock on ``<data dir>/kanade-up.lock`` (held for the
  supervisor's lifetime, released by the OS however it ends) refuses the second.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import IO

LOCK_FILE = "kanade-up.lock"


class DataDirBusy(RuntimeError):
    """Another ``kanade up`` holds the data dir."""


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
