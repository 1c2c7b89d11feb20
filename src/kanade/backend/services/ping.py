"""Pinging one agent (SPEC §4.5): a fresh heartbeat by core-NATS request/reply."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from kanade.backend.errors import Corrupt, TimedOut
from kanade.backend.services.slugs import require_slug
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.models.wire import Heartbeat, WireDecodeError, decode


class PingService:
    def __init__(self, bus: Callable[[], Bus]) -> None:
        self._bus = bus

    async def ping(self, pc_id: str, *, timeout: float) -> dict[str, Any]:
        """The agent's heartbeat plus the round trip; :class:`TimedOut` when it is silent."""
        require_slug(pc_id, "pc_id")
        bus = self._bus()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            msg = await bus.nc.request(subjects.ping_subject(pc_id), b"", timeout=timeout)
        except NoRespondersError:
            # The broker knows at once that nobody listens: say that, and how long it took,
            # not "no answer in <timeout>" after a fraction of it.
            elapsed = loop.time() - t0
            raise TimedOut(
                f"{pc_id} is not connected: the broker answered in {elapsed:.2f} s that "
                f"nothing listens for it; `kanade agents show {pc_id}` says when it was last "
                "seen",
                pc_id=pc_id,
                timeout=timeout,
                elapsed_s=round(elapsed, 3),
            ) from None
        except (NatsTimeoutError, TimeoutError):
            elapsed = loop.time() - t0
            raise TimedOut(
                f"no answer from {pc_id} in {elapsed:.1f} s",
                pc_id=pc_id,
                timeout=timeout,
                elapsed_s=round(elapsed, 3),
            ) from None
        rtt_ms = (loop.time() - t0) * 1000.0
        try:
            hb = decode(Heartbeat, msg.data)
        except WireDecodeError as exc:
            raise Corrupt(f"{pc_id} answered with an unreadable heartbeat: {exc}") from None
        return {**hb.model_dump(mode="json", by_alias=True), "rtt_ms": round(rtt_ms, 3)}
