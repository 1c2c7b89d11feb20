"""Whether the agent's data directory takes writes (SPEC §7: disk full → refuse new work and
say so): fed by every durable writer, read by intake, executor and heartbeat.

The disk counts as full from the first failed write (any ``OSError``: ENOSPC, a quota, a
read-only remount) until a write succeeds again, and whenever less than
:data:`RESERVE_BYTES` is free. Why, and what the agent does meanwhile: docs/agent.md,
"A full disk".
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

log = logging.getLogger("kanade.agent")

RESERVE_BYTES: Final = 1024 * 1024
"""Below this much free space new work is refused before a write fails: a finished script
needs room for its result (two streams of up to 256 KiB inline) and the ledger line."""

MAX_ERROR_CHARS: Final = 200
"""The error text travels in every heartbeat: bounded (the wire model bounds it too)."""


def free_bytes(path: Path) -> int | None:
    """Bytes this process may still write under ``path`` (None where unknown)."""
    statvfs = getattr(os, "statvfs", None)
    if statvfs is None:  # Windows
        import shutil  # not at import: an idle POSIX agent never needs it (SPEC §10.2)

        try:
            return int(shutil.disk_usage(path).free)
        except OSError:
            return None
    try:
        st = statvfs(path)
    except OSError:
        return None
    # root may use the blocks reserved for it (ext4: 5 %); anyone else may not.
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return int(blocks * st.f_frsize)


def describe(exc: OSError) -> str:
    """``No space left on device`` rather than ``[Errno 28] No space left on device: 'x'``."""
    text = exc.strerror or (errno.errorcode.get(exc.errno or 0) if exc.errno else None) or str(exc)
    return text[:MAX_ERROR_CHARS]


class DiskHealth:
    """The state of one data directory: full or not, why, and who wants to know."""

    def __init__(self, path: Path, *, reserve_bytes: int = RESERVE_BYTES) -> None:
        self.path = path
        self.reserve_bytes = reserve_bytes
        self._error: str | None = None  # the last failed write, until a write succeeds
        self._low: str | None = None  # "only N bytes free", when below the reserve
        self._was_full = False
        # Told on every change between full and not full (wake the heartbeat, the retries).
        self.on_change: list[Callable[[bool], None]] = []

    # --- what writers report ------------------------------------------------------------------
    def failed(self, exc: OSError, what: str) -> None:
        """A durable write failed (``what``: the ledger, the outbox, …)."""
        if self._error is None:
            self._error = describe(exc)
            self._look()
            self._transition(f"writing {what} failed: {self._error}")

    def wrote(self) -> None:
        """A durable write succeeded: the directory takes writes again."""
        if self._error is not None:
            self._error = None
            self._look()  # still below the reserve: still full, no flapping
            self._transition(None)

    # --- what readers ask ---------------------------------------------------------------------
    def free(self) -> int | None:
        """Free bytes now (and full or not, accordingly)."""
        free = self._look()
        self._transition(self._low)
        return free

    def _look(self) -> int | None:
        free = free_bytes(self.path)
        low = free is not None and free < self.reserve_bytes
        if low != (self._low is not None):
            self._low = f"only {free} bytes free" if low else None
        return free

    @property
    def full(self) -> bool:
        """Whether new work must be refused (looks at the free space once more)."""
        self.free()
        return self._error is not None or self._low is not None

    @property
    def error(self) -> str | None:
        """Why it is full (None when it is not)."""
        return self._error if self._error is not None else self._low

    def refusal(self) -> str:
        """The stderr of a command refused while the disk is full."""
        return (
            f"refused: the agent's data directory {self.path} is full ({self.error}); "
            "no new work runs here until it has room again"
        )

    def _transition(self, why: str | None) -> None:
        full = self._error is not None or self._low is not None
        if full == self._was_full:
            return
        self._was_full = full
        if full:
            # One line, no traceback: this is the operator's news, not a bug.
            log.error(
                "data directory %s is full (%s): new commands are refused (skipped, exit 122) "
                "and finished results are held in memory until they can be written or sent",
                self.path,
                why,
            )
        else:
            log.warning("data directory %s takes writes again", self.path)
        for callback in self.on_change:
            callback(full)
