"""Core-NATS subscriptions for small control messages (ping, kill, live-watch), with a
bound on what the client may queue for them.

nats-py queues every delivered message for a subscription until its callback has taken it,
up to 64 MiB by default. A process that falls behind — an agent on a loaded machine — while
a hostile or broken publisher sends 8 MiB messages to a control subject would hold all of
them at once, and the allocator keeps that high-water mark. Legitimate control messages
are a few hundred bytes, so the client drops anything over the bound instead (reported as
a slow-consumer error, which the connection logs at most every 30 s per kind).

KV watches are not control subscriptions: a burst of legitimate 1 MiB job manifests must
not be dropped, and their bucket already caps each value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

#: What one control subscription may queue: thousands of legitimate control messages, far
#: below the broker's 8 MiB maximum payload (so one such message is dropped on arrival).
#: Plain numbers: an idle agent never imports kanade.bus.topology (its RSS budget).
CONTROL_PENDING_BYTES: Final = 1024 * 1024
CONTROL_PENDING_MSGS: Final = 4096


async def subscribe_control(
    nc: Client, subject: str, cb: Callable[[Msg], Awaitable[None]]
) -> Subscription:
    """Subscribe ``cb`` to ``subject`` with the control-message queue bound."""
    return await nc.subscribe(
        subject,
        cb=cb,
        pending_msgs_limit=CONTROL_PENDING_MSGS,
        pending_bytes_limit=CONTROL_PENDING_BYTES,
    )
