"""kanade.bus.control against a real nats-server: a control subscription whose callback is
behind does not queue oversized messages (the agent's memory under a hostile publisher),
and still gets the small legitimate ones."""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from kanade.bus import Bus
from kanade.bus.control import CONTROL_PENDING_BYTES, subscribe_control
from polling import eventually

BIG = 4 * 1024 * 1024  # under the broker's 8 MiB payload limit, over the control bound


async def test_a_lagging_control_subscription_drops_oversized_messages(bus: Bus) -> None:
    release = asyncio.Event()
    got: list[bytes] = []

    async def slow(msg: Msg) -> None:
        await release.wait()  # the process is behind: nothing is taken off the queue
        got.append(msg.data)

    sub = await subscribe_control(bus.nc, "ctltest.kill", slow)
    await bus.nc.publish("ctltest.kill", b"first")  # taken by the callback, which waits
    await bus.nc.flush()
    await eventually(lambda: sub.pending_msgs == 0, timeout=10, what="the first is taken")
    for _ in range(6):
        await bus.nc.publish("ctltest.kill", b"x" * BIG)
    await bus.nc.publish("ctltest.kill", b"small")
    await bus.nc.flush()

    await eventually(lambda: sub.pending_msgs >= 1, timeout=10, what="the small one queued")
    # Without the bound the client would now hold 24 MiB for this subscription.
    assert sub.pending_bytes <= CONTROL_PENDING_BYTES
    release.set()
    await eventually(lambda: got[-1:] == [b"small"], timeout=10, what="the small one arrives")
    assert got == [b"first", b"small"]
    await sub.unsubscribe()
