"""A real small filesystem for disk-full fault tests: a tmpfs mounted over a directory.

The agent's data dir is put on it, then :meth:`SmallDisk.fill` takes every free byte (a
filler file written until the kernel says ENOSPC) and :meth:`SmallDisk.free` gives it back.
Mounting needs root (or CAP_SYS_ADMIN); where it is refused the test is skipped, naming
the reason, rather than faked: the agent's handling of ENOSPC is unit-tested without a
mount (tests/unit/agent/durable).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

MiB = 1024 * 1024
_CHUNK = 64 * 1024


class SmallDisk:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / ".filler"

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bfree * st.f_frsize

    def fill(self) -> int:
        """Take every free byte; returns how many were written."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            chunk = b"\0" * _CHUNK
            while True:
                try:
                    n = os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    if len(chunk) == 1:
                        break
                    chunk = chunk[: max(1, len(chunk) // 16)]  # the last partial pages
                    continue
                written += n
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()


@contextlib.contextmanager
def small_disk(path: Path, size: int = 8 * MiB) -> Iterator[SmallDisk]:
    """Mount a ``size``-byte tmpfs on ``path`` (skip the test where that is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("disk-full fault test: mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"disk-full fault test: cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield SmallDisk(path)
    finally:
        # Lazy: a process that still has a file open there must not keep the mount alive.
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
