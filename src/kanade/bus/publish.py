"""Publishing to JetStream in bulk: every message handed to the client first, acks collected after.

Each message carries its ``Nats-Msg-Id`` (see :mod:`kanade.core.msgids`), so a retry of a
message the broker already stored is dropped by the broker's duplicate window: callers retry
freely.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from nats.js.api import PubAck

from kanade.bus.connection import MSG_ID_HEADER, Bus


@dataclass(frozen=True)
class Outgoing:
    """One JetStream message, ready to go: subject, bytes and its ``Nats-Msg-Id`` (None
    for a KV put: a key is rewritten with new values, never deduplicated)."""

    subject: str
    payload: bytes
    msg_id: str | None


PIPELINE_YIELD_EVERY = 64
"""Messages handed to the client between two yields to the event loop (see below)."""
PIPELINE_ACK_TIMEOUT_S = 5.0
PIPELINE_MAX_PENDING = 2_000
"""Unacked messages at most. nats-py's own cap (4 000) makes ``publish_async`` wait for an
ack with no deadline — forever while the broker is away."""


async def send_pipelined(
    bus: Bus, messages: Sequence[Outgoing], *, yield_every: int = PIPELINE_YIELD_EVERY
) -> list[asyncio.Future[PubAck] | BaseException]:
    """Hand every message to the client without waiting for its ack; one pending ack (or
    the error that prevented sending) per message, in order. Pair with :func:`settle`.

    ``js.publish`` is a request/response: each message pays a reply subscription lookup,
    a future, a ``wait_for`` task and the ack's parse *before the next can start* in its
    coroutine, so even hundreds of concurrent ones leave the socket in dribbles. Here each
    message is one buffered PUB with a reply inbox on nats-py's shared async-reply
    subscription, and the acks are collected afterwards. Every ``yield_every`` messages
    the loop yields once so the client's flusher writes what is buffered: the first
    messages reach the broker (and a subscribed agent) while the rest are still being
    handed over, instead of all leaving in one write at the end. The messages go out on
    one connection in this order, so a caller that sends commands before records knows
    no record overtakes its commands.
    """
    js = bus.js
    out: list[asyncio.Future[PubAck] | BaseException] = []
    stalled = False
    for i, msg in enumerate(messages, 1):
        if not stalled and js.publish_async_pending() >= PIPELINE_MAX_PENDING:
            stalled = not await _some_acked(out)
        if stalled:
            out.append(TimeoutError("the broker stopped acknowledging publishes"))
            continue
        try:
            headers = bus.signed(msg.subject, msg.payload, {})
            if msg.msg_id is not None:
                headers[MSG_ID_HEADER] = msg.msg_id
            # No wait_stall: with one, nats-py wraps every publish in a wait_for task,
            # which costs more than the publish; the cap is kept by the check above.
            out.append(await js.publish_async(msg.subject, msg.payload, headers=headers or None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # closed, reconnect buffer full: retried by the caller
            out.append(exc)
        if i % yield_every == 0:
            await asyncio.sleep(0)
    return out


async def _some_acked(pending: list[asyncio.Future[PubAck] | BaseException]) -> bool:
    """Wait until one of ``pending`` is acked (False: none within the ack timeout)."""
    waiting = [p for p in pending if isinstance(p, asyncio.Future) and not p.done()]
    if not waiting:
        return True  # the unacked ones are somebody else's: nothing of ours to wait for
    done, _ = await asyncio.wait(
        waiting, timeout=PIPELINE_ACK_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
    )
    return bool(done)


async def settle(
    pending: Sequence[asyncio.Future[PubAck] | BaseException],
    *,
    timeout: float = PIPELINE_ACK_TIMEOUT_S,
) -> list[BaseException | None]:
    """Wait (one deadline for all) for the acks of :func:`send_pipelined`; per message
    None when the broker stored it (or dropped it as a duplicate of its Nats-Msg-Id),
    else the error. An ack still missing at the deadline is a ``TimeoutError``: the
    caller retries, and the msg id makes a retry of a message that was stored harmless."""
    futures = [p for p in pending if isinstance(p, asyncio.Future)]
    if futures:
        _, late = await asyncio.wait(futures, timeout=timeout)
        for fut in late:
            fut.cancel()  # nats-py drops its reply slot when the future is done
    out: list[BaseException | None] = []
    for p in pending:
        if not isinstance(p, asyncio.Future):
            out.append(p)
        elif p.cancelled():
            out.append(TimeoutError(f"no ack from the broker within {timeout:g}s"))
        else:
            out.append(p.exception())
    return out


async def publish_one(bus: Bus, msg: Outgoing) -> None:
    """One message, waiting for its ack (the retry path of a pipelined publish)."""
    await bus.publish_js(msg.subject, msg.payload, msg_id=msg.msg_id)
