"""Fault injection for unit tests: a directory whose disk is full (ENOSPC) on demand.

Integration tests fill a real small filesystem (tests/integration/smalldisk.py); unit tests
make every write under one directory fail instead, through the two doors the agent's
durable files use: ``os.write`` on a descriptor of a file there, and opening a file there
for writing (``open_private``, through which every new file is made). Linux only (the path
of a descriptor comes from /proc/self/fd).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kanade.agent.durable import fsutil, ledger

_real_write = os.write
_real_open_private = fsutil.open_private


class FullDisk:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        if not sys.platform.startswith("linux"):
            pytest.skip("the full-disk fault injection reads /proc/self/fd")
        self.root = str(root.resolve())
        self.full = False
        # Bytes a write may still put down before the disk is full (None: none at all).
        self.budget: int | None = None
        self.refused = 0
        monkeypatch.setattr(os, "write", self._write)
        for module in (fsutil, ledger):
            monkeypatch.setattr(module, "open_private", self._open_private)

    def _mine(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root + os.sep)

    def _refuse(self) -> OSError:
        self.refused += 1
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def _write(self, fd: int, data: Any) -> int:
        if self.full:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                target = ""
            if self._mine(target):
                if self.budget:
                    n = min(self.budget, len(data))
                    self.budget -= n
                    return _real_write(fd, bytes(data[:n]))
                raise self._refuse()
        return _real_write(fd, data)

    def _open_private(self, path: Path, flags: int) -> int:
        if self.full and self._mine(str(Path(path).resolve())):
            raise self._refuse()
        return _real_open_private(path, flags)


def full_disk(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], FullDisk]:
    return lambda root: FullDisk(root, monkeypatch)
