"""kanade.bus.pull against a real nats-server: the open pull request is renewed the moment
the broker ends it, not at the loop's next idle tick."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, Header, StreamConfig

from kanade.bus import Bus
from kanade.bus.pull import PullConsumer

TICK_S = 5.0  # the loop's idle tick: what an ended request used to wait for
EXPIRES_S = 0.4


class ShortRequests(PullConsumer):
    """Pull requests that end (408) long before the loop's idle tick; ``ended`` is set
    when the broker says one did."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ended = asyncio.Event()

    async def _on_msg(self, msg: Msg) -> None:
        await super()._on_msg(msg)
        if msg.headers and msg.headers.get(Header.STATUS.value) == "408":
            self.ended.set()

    async def _request(self, count: int) -> None:
        req = {"batch": count, "expires": int(EXPIRES_S * 1e9)}
        await self._nc.publish(self._next_subject, json.dumps(req).encode(), reply=self._inbox)
        self._outstanding += count


async def test_a_message_after_the_request_expired_arrives_at_once(bus: Bus) -> None:
    await bus.js.add_stream(StreamConfig(name="PULLTEST", subjects=["pulltest.>"]))
    await bus.js.add_consumer(
        "PULLTEST", ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT)
    )
    pull = ShortRequests(bus.nc, "PULLTEST", "c", window=8, expires=30.0,
                         idle_heartbeat=TICK_S)  # fmt: skip
    received: asyncio.Queue[float] = asyncio.Queue()

    async def consume() -> None:
        async for msg in pull.messages():
            received.put_nowait(time.monotonic())
            await msg.ack()

    task = asyncio.create_task(consume())
    try:
        for i in range(3):  # each after the open request ended (408)
            pull.ended.clear()
            await asyncio.wait_for(pull.ended.wait(), timeout=TICK_S)
            sent = time.monotonic()
            await bus.js.publish(f"pulltest.{i}", b"x")
            arrived = await asyncio.wait_for(received.get(), timeout=TICK_S + 5)
            assert arrived - sent < TICK_S / 2, f"message {i} waited {arrived - sent:.2f}s"
    finally:
        await pull.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
