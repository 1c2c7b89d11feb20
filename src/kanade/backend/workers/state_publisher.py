"""The state publisher: writes changed operator state to KV ``kanade_state`` (SPEC §1.3).

Woken by every committed write that touched operator state (``Database.listen``), and on
an interval as a safety net (a broker that was away); the work itself is
:meth:`kanade.backend.workers.state_sync.StateSync.publish_pending`.
"""

from __future__ import annotations

import asyncio
from typing import Final

from kanade.backend.workers.state_sync import StateSync
from kanade.worker import Worker

DEFAULT_INTERVAL_S: Final = 5.0
COALESCE_S: Final = 0.25
"""A pass waits this long after its wake-up: a burst of changes to one key (a scheduler tick,
a rollout step) becomes one document. A caller that must not wait flushes instead."""


class StatePublisher(Worker):
    name = "state-publisher"

    def __init__(
        self,
        sync: StateSync,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        coalesce_s: float = COALESCE_S,
    ) -> None:
        super().__init__(interval=interval_s)
        self._sync = sync
        self._coalesce_s = coalesce_s
        self._backlog = False

    async def step(self) -> bool:
        if self._sync.gen is None:
            return False  # not started: the generation of what it would write is unknown
        if not self._backlog:  # a fresh wake-up: let the burst that caused it complete
            await asyncio.sleep(self._coalesce_s)
        self._backlog = await self._sync.publish_pending() >= self._sync.batch
        return self._backlog
