"""Which execs someone watches (SPEC §4.12): the backend's watch messages as leases, each
ending ``for_s`` seconds after the newest. Loaded by every agent (a watch may come before
the command it is about); the publisher is loaded only when a script first runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Final

MAX_WATCHED: Final = 4096
"""Leases remembered at once (each a few dozen bytes); the soonest to end go first."""


class WatchLeases:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._until: dict[str, float] = {}  # exec_id -> end of its lease (clock)

    def watch(self, exec_ids: Iterable[str], for_s: float) -> None:
        now = self.clock()
        until = now + for_s
        for exec_id in exec_ids:
            self._until[exec_id] = max(self._until.get(exec_id, until), until)
        self.forget(now)
        if len(self._until) > MAX_WATCHED:
            for exec_id in sorted(self._until, key=self._until.__getitem__)[
                : len(self._until) - MAX_WATCHED
            ]:
                del self._until[exec_id]

    def watching(self, exec_id: str, now: float | None = None) -> bool:
        until = self._until.get(exec_id)
        return until is not None and until > (self.clock() if now is None else now)

    def forget(self, now: float) -> None:
        """Drop the leases that ran out."""
        for exec_id in [e for e, until in self._until.items() if until <= now]:
            del self._until[exec_id]

    def __len__(self) -> int:
        return len(self._until)
