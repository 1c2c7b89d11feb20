"""Publishing live output: one :class:`LiveTap` per run fed by the process reader, and the
agent's :class:`LiveOutput`, which publishes what the taps hold — only for execs someone
watches (a lease the backend renews), coalesced, within the agent-wide :class:`Budget`.

Nothing here ever waits on the script: a tap keeps the newest :data:`TAIL_BYTES` of each
stream and counts what it dropped, so a watch that begins late still shows the latest output
and a script writing faster than the cap loses only its *live* copy (the result carries the
output as always). Why core NATS and a lease: docs/live-output.md.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Final

from kanade.agent.liveout.budget import Budget
from kanade.agent.liveout.buffer import TailBuffer
from kanade.agent.liveout.leases import WatchLeases
from kanade.core import subjects
from kanade.core.ids import is_slug
from kanade.core.models.wire import LiveChunk, encode

log = logging.getLogger("kanade.agent")

DEFAULT_BYTES_PER_S: Final = 16 * 1024
DEFAULT_MSGS_PER_S: Final = 10.0
TAIL_BYTES: Final = 32 * 1024
"""Per stream and run: the newest output held for a watcher (or a watch that begins late)."""
MAX_MSG_BYTES: Final = 12 * 1024
"""Output bytes in one message (under the wire model's bound whatever the decoder holds)."""
LINGER_S: Final = 0.05
"""Output written within this long goes out as one message."""

Publish = Callable[[str, bytes], Awaitable[None]]
Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None] | None"]


def in_running_loop(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(coro)
STREAMS: Final = ("stdout", "stderr")


def _decoder() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def _skip_continuation(data: bytes) -> tuple[bytes, int]:
    """After a gap a stream may resume inside a character: its continuation bytes
    (``10xxxxxx``, at most 3) would decode as noise, so they join the gap."""
    i = 0
    while i < min(3, len(data)) and 0x80 <= data[i] <= 0xBF:
        i += 1
    return data[i:], i


class LiveTap:
    """One run's live output (one command on this agent, every attempt of it)."""

    def __init__(self, owner: LiveOutput, exec_id: str) -> None:
        self._owner = owner
        self.exec_id = exec_id
        self.buffers = {s: TailBuffer(TAIL_BYTES) for s in STREAMS}
        self._decoders = {s: _decoder() for s in STREAMS}
        self._resuming = dict.fromkeys(STREAMS, False)
        self.seq = 0
        self.attempt = 1
        self.closed = False

    def feed(self, stream: str, data: bytes) -> None:
        """What the script wrote on ``stream`` (called by the process reader; never waits)."""
        if self.closed or not data:
            return
        self.buffers[stream].feed(data)
        self._owner.kick(self)

    def close(self) -> None:
        """The run is over: once what is held went out, a last message says so (``final``)."""
        if not self.closed:
            self.closed = True
            self._owner.release(self)

    @property
    def held(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    def has_news(self) -> bool:
        """Something to send: output, a count of dropped bytes, or the last message."""
        return self.closed or any(len(b) or b.elided for b in self.buffers.values())

    def chunk(self, n: int, pc_id: str) -> LiveChunk:
        """The next message, carrying up to ``n`` bytes of output: each stream its half,
        what one leaves to the other."""
        share = {s: min(len(self.buffers[s]), (n + 1) // 2) for s in STREAMS}
        spare = n - sum(share.values())
        for s in STREAMS:
            extra = min(spare, len(self.buffers[s]) - share[s])
            share[s] += extra
            spare -= extra
        texts: dict[str, str] = {}
        gaps: dict[str, int] = {}
        for s in STREAMS:
            gone, data = self.buffers[s].take(share[s])
            if gone:
                self._resuming[s] = True
                self._decoders[s] = _decoder()  # a character cut by the gap is part of it
            if self._resuming[s] and data:
                data, skipped = _skip_continuation(data)
                gone += skipped
                self._resuming[s] = not data
            final_text = self.closed and not len(self.buffers[s])
            texts[s] = self._decoders[s].decode(data, final=final_text)
            gaps[s] = gone
        final = self.closed and not self.held
        chunk = LiveChunk(
            exec_id=self.exec_id,
            pc_id=pc_id,
            seq=self.seq,
            attempt=self.attempt,
            stdout=texts["stdout"],
            stderr=texts["stderr"],
            stdout_elided=gaps["stdout"],
            stderr_elided=gaps["stderr"],
            final=final,
        )
        self.seq += 1
        return chunk


class LiveOutput:
    """This agent's live output: the runs' taps, the watch leases, the cap, the sender."""

    def __init__(
        self,
        pc_id: str,
        publish: Publish,
        *,
        bytes_per_s: int = DEFAULT_BYTES_PER_S,
        msgs_per_s: float = DEFAULT_MSGS_PER_S,
        leases: WatchLeases | None = None,
        clock: Callable[[], float] = time.monotonic,
        spawn: Spawn = in_running_loop,
    ) -> None:
        """``leases``: the agent's watch leases (kept before this object exists); ``spawn``
        starts the sender when there is something to send (a test driving :meth:`step`
        itself passes one that starts nothing)."""
        self.pc_id = pc_id
        self._spawn = spawn
        self._publish = publish
        self._clock = clock
        self.leases = leases if leases is not None else WatchLeases(clock)
        self.budget = Budget(max(1, bytes_per_s), msgs_per_s, clock())
        self.enabled = bytes_per_s > 0
        self._taps: list[LiveTap] = []
        self._task: asyncio.Task[None] | None = None
        self._next = 0  # round robin: the tap served first in the next step
        self.published = 0

    # --- what the executor, the control subject and the config call -----------------------
    def open(self, exec_id: str) -> LiveTap | None:
        """A tap for one run of ``exec_id`` (None while live output is off)."""
        if not self.enabled or not is_slug(exec_id):
            return None
        tap = LiveTap(self, exec_id)
        self._taps.append(tap)
        if self.watching(tap.exec_id, self._clock()):
            self._start()
        return tap

    def watch(self, exec_ids: Iterable[str], for_s: float) -> None:
        """Someone watches these execs for ``for_s`` more seconds (a renewed lease)."""
        ids = set(exec_ids)
        self.leases.watch(ids, for_s)
        self.watched(ids)

    def watched(self, exec_ids: set[str]) -> None:
        """The leases of these execs were just renewed: send what their runs hold."""
        if any(t.exec_id in exec_ids for t in self._taps):
            self._start()

    def watching(self, exec_id: str, now: float) -> bool:
        return self.leases.watching(exec_id, now)

    def retune(self, bytes_per_s: int, msgs_per_s: float) -> None:
        """A new cap from the effective config (0 bytes/s: no live output)."""
        self.enabled = bytes_per_s > 0
        self.budget.retune(max(1, bytes_per_s), msgs_per_s, self._clock())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # --- called by the taps -----------------------------------------------------------------
    def kick(self, tap: LiveTap) -> None:
        if self.watching(tap.exec_id, self._clock()):
            self._start()

    def release(self, tap: LiveTap) -> None:
        """A run ended: its tap stays only while watched (for what it holds and ``final``)."""
        if self.watching(tap.exec_id, self._clock()):
            self._start()
        elif tap in self._taps:
            self._taps.remove(tap)

    # --- sending ------------------------------------------------------------------------------
    def step(self, now: float) -> tuple[list[tuple[str, bytes]], float | None]:
        """The messages that may go now, and the wait until the next step (None: nothing
        watched has anything to send)."""
        self._forget(now)
        ready = [t for t in self._taps if t.has_news() and self.watching(t.exec_id, now)]
        if ready:
            start = self._next % len(ready)
            ready = ready[start:] + ready[:start]
        out: list[tuple[str, bytes]] = []
        served = 0
        for tap in ready:
            n = self.budget.grant(min(tap.held, MAX_MSG_BYTES), now)
            if n is None:
                break
            served += 1
            chunk = tap.chunk(n, self.pc_id)
            out.append((subjects.live_subject(self.pc_id, tap.exec_id), encode(chunk)))
            if chunk.final:
                self._taps.remove(tap)
        self._next += max(1, served)
        waiting = [t for t in self._taps if t.has_news() and self.watching(t.exec_id, now)]
        if not waiting:
            return out, None
        return out, min(self.budget.wait_s(min(t.held, 1), now) for t in waiting)

    def _forget(self, now: float) -> None:
        """Leases that ran out; the taps of finished runs no one watches any more."""
        self.leases.forget(now)
        self._taps = [t for t in self._taps if not t.closed or self.leases.watching(t.exec_id, now)]

    def _busy(self) -> bool:
        now = self._clock()
        return any(t.has_news() and self.watching(t.exec_id, now) for t in self._taps)

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = self._spawn(self._run())

    async def _run(self) -> None:
        try:
            await self._send_while_busy()
        except asyncio.CancelledError:
            raise
        except Exception:  # never the script's problem; the next feed starts a new sender
            log.exception("live output sender failed")

    async def _send_while_busy(self) -> None:
        await asyncio.sleep(LINGER_S)  # what the script writes meanwhile joins one message
        while True:
            messages, wait = self.step(self._clock())
            for subject, data in messages:
                try:
                    await self._publish(subject, data)
                    self.published += 1
                except Exception as exc:  # best effort: the result carries the output anyway
                    log.debug("live output not published: %s", exc)
            # Checked after the awaits: a tap fed meanwhile found this task still running.
            if wait is None and not self._busy():
                return
            await asyncio.sleep(max(wait or 0.0, LINGER_S))
