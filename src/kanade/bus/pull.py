"""Continuous pull from a durable JetStream consumer: a window of requested messages kept
open, each handed over the moment it arrives.

Why not ``fetch(n)``: docs/bus.md, "Continuous pull".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import Header

_STATUS: Final = Header.STATUS.value
_DESCRIPTION: Final = Header.DESCRIPTION.value
# A JetStream reply subject: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>,
# or the newer form with a domain and an account hash first (and a trailing token).
_V1_TOKENS: Final = 9
_V1_TIMESTAMP: Final = 7
_V2_MIN_TOKENS: Final = 11  # what nats-py accepts (the trailing token may be absent)
_ACK_PREFIX: Final = [Msg.Ack.Prefix0, Msg.Ack.Prefix1]


def published_at(msg: Msg) -> datetime:
    """The stream's publish time of a JetStream message: ``msg.metadata.timestamp``, the
    same value by the same arithmetic, without building the whole metadata (the projectors
    read it for every message; the two dataclasses cost a quarter of decoding a result)."""
    tokens = msg.reply.split(".") if msg.reply else []
    n = len(tokens)
    if (n == _V1_TOKENS or n >= _V2_MIN_TOKENS) and tokens[:2] == _ACK_PREFIX:
        index = _V1_TIMESTAMP if n == _V1_TOKENS else Msg.Ack.Timestamp
        return datetime.fromtimestamp(int(tokens[index]) / 1_000_000_000.0, UTC)
    return msg.metadata.timestamp  # not a JetStream reply: nats-py raises as it always has


class PullConsumer:
    """Iterate over the messages of one durable pull consumer, one by one.

    ``window`` bounds how many delivered-but-unprocessed messages the client may
    hold; the caller acks each message itself (usually after a durable write).
    """

    def __init__(
        self,
        nc: Client,
        stream: str,
        consumer: str,
        *,
        window: int = 256,
        expires: float = 30.0,
        idle_heartbeat: float = 5.0,
        on_gone: Callable[[], None] | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._nc = nc
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._window = window
        self._expires = expires
        self._idle_heartbeat = min(idle_heartbeat, expires / 2)
        # None: a wake-up, not a message — the open requests ended (see _on_msg).
        self._queue: asyncio.Queue[Msg | None] = asyncio.Queue()
        self._inbox = nc.new_inbox()
        self._sub: Any = None
        self._outstanding = 0
        self._last_activity = time.monotonic()
        self._closed = False
        self._on_gone = on_gone

    async def _on_msg(self, msg: Msg) -> None:
        self._last_activity = time.monotonic()
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is None:
            self._outstanding = max(0, self._outstanding - 1)
            self._queue.put_nowait(msg)
        elif status in ("408", "409", "404", "503"):
            # The request expired or was cancelled (e.g. consumer changed, leader
            # moved): everything it still promised is gone. Wake the loop to ask again
            # at once: waiting for its next idle-heartbeat tick left the consumer with
            # no open request for up to that long (5 s for an agent), and a command
            # published meanwhile waited for it — a third of the runs to 25 agents.
            self._outstanding = 0
            self._queue.put_nowait(None)
            description = str(msg.headers.get(_DESCRIPTION, "")) if msg.headers else ""
            gone = status in ("404", "503") or "deleted" in description.lower()
            if gone and self._on_gone is not None:
                self._on_gone()
        # "100" is an idle heartbeat: activity noted above is all it means.

    async def _request(self, count: int) -> None:
        req = {
            "batch": count,
            "expires": int(self._expires * 1e9),
            "idle_heartbeat": int(self._idle_heartbeat * 1e9),
        }
        await self._nc.publish(self._next_subject, json.dumps(req).encode(), reply=self._inbox)
        self._outstanding += count

    async def _top_up(self) -> None:
        stalled = time.monotonic() - self._last_activity > 2 * self._idle_heartbeat
        if stalled:
            self._outstanding = 0
            self._last_activity = time.monotonic()
        # Re-request once half the window is used, so the server always has
        # room to push while we process.
        missing = self._window - self._outstanding - self._queue.qsize()
        if missing >= max(1, self._window // 2) and self._nc.is_connected:
            await self._request(missing)

    async def messages(self) -> AsyncIterator[Msg]:
        """Yield messages as they arrive, until :meth:`close` is called."""
        self._sub = await self._nc.subscribe(
            self._inbox, cb=self._on_msg, pending_msgs_limit=self._window * 4 + 64
        )
        try:
            while not self._closed:
                await self._top_up()
                try:
                    msg = await asyncio.wait_for(self._queue.get(), timeout=self._idle_heartbeat)
                except TimeoutError:
                    continue
                if msg is not None:
                    yield msg
        finally:
            await self._unsubscribe()

    def reset(self) -> None:
        """Forget every open pull request and ask again now (after the consumer was
        re-created, or the connection came back): without this the window would only
        recover at the next stall check."""
        self._outstanding = 0
        self._last_activity = time.monotonic()
        if self._sub is not None and not self._closed:
            task = asyncio.ensure_future(self._top_up())
            task.add_done_callback(_swallow)

    def drain_ready(self, limit: int) -> list[Msg]:
        """Messages already delivered and waiting, without blocking (for batching)."""
        out: list[Msg] = []
        woken = False
        while len(out) < limit:
            try:
                msg = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if msg is None:
                woken = True
            else:
                out.append(msg)
        if woken:  # kept for the loop, which must still ask again
            self._queue.put_nowait(None)
        return out

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):  # connection already gone: nothing to release
                await sub.unsubscribe()

    async def close(self) -> None:
        self._closed = True
        await self._unsubscribe()


def _swallow(task: asyncio.Future[None]) -> None:
    # A top-up that fails (connection dropped again) is retried by the intake loop.
    if not task.cancelled():
        task.exception()
