"""Crash-safe, owner-only file writes: the agent's durability rests on these functions.

Everything the agent keeps (ledger, outbox, scheduler state, cached scripts) holds command
text or output: files are created 0600 inside a 0700 data dir (SPEC §8.3), whatever the umask.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # e.g. Windows: directories cannot be fsync'd
        pass
    finally:
        os.close(fd)


PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it owner-only."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIR)
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open`` with owner-only permissions for a file it creates."""
    return os.open(path, flags | os.O_CREAT, PRIVATE_FILE)


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` so that ``path`` holds either the old or the new content, never a mix.

    Write to a temp file in the same directory, fsync it, rename over the
    target, then fsync the directory so the rename itself survives power loss.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        remove(tmp)  # a half-written temp file on a full disk is space nobody gets back
        raise
    if durable:
        fsync_dir(path.parent)


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
