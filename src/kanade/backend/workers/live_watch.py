"""Renewing live-output watches (SPEC §4.12): while someone watches an exec, agents are told
again every :data:`~kanade.backend.messaging.liveout.RENEW_S` seconds (their lease lasts
three times as long), and what a new broker connection lost is subscribed again."""

from __future__ import annotations

from kanade.backend.messaging.liveout import RENEW_S, LiveRelay
from kanade.worker import Worker


class LiveWatchRenewer(Worker):
    name = "live-output watches"

    def __init__(self, relay: LiveRelay, *, interval_s: float = RENEW_S) -> None:
        super().__init__(interval=interval_s)
        self._relay = relay

    async def step(self) -> None:
        await self._relay.renew()
