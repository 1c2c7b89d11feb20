"""Retries what a full disk refused (ledger lines, outbox messages held in memory) until the
disk takes it, and notices when the data directory has room again.

Idle — nothing held, the disk not full — it sleeps until woken (no polling); while anything
waits it tries once a second. Why: docs/agent.md, "A full disk".
"""

from __future__ import annotations

import contextlib
import math
import os

from kanade.agent.durable.diskhealth import DiskHealth
from kanade.agent.durable.fsutil import open_private
from kanade.agent.durable.ledger import Ledger
from kanade.agent.durable.outbox import Outbox
from kanade.worker import Worker

RETRY_S = 1.0
_PROBE = b"\0" * 4096  # one block: a byte could still fit into a page some file has


class DiskWatch(Worker):
    name = "disk watch"

    def __init__(self, disk: DiskHealth, ledger: Ledger, outbox: Outbox) -> None:
        super().__init__(interval=math.inf)
        self.disk = disk
        self.ledger = ledger
        self.outbox = outbox
        disk.on_change.append(lambda _full: self.wake())

    def waiting(self) -> bool:
        """Something is held in memory, or the disk is (still) known to be full."""
        return bool(self.ledger.backlog or self.outbox.held) or self.disk.full

    async def step(self) -> None:
        # The ledger first: a result's "finished" line before the message that sends it.
        if self.ledger.backlog:
            self.ledger.flush_backlog()
        if self.outbox.held and not self.ledger.backlog:
            self.outbox.persist()
        if self.disk.error is not None and not (self.ledger.backlog or self.outbox.held):
            self.probe()

    def probe(self) -> bool:
        """Write (and remove) one block: whether the directory takes writes again."""
        path = self.disk.path / ".disk-probe"
        try:
            fd = open_private(path, os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, _PROBE)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self.disk.failed(exc, "a probe file")
            return False
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
        self.disk.wrote()
        return True

    def next_delay(self, more: bool | None, failed: bool) -> float:
        if failed or more:
            return super().next_delay(more, failed)
        return RETRY_S if self.waiting() else self.interval
