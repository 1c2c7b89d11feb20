"""Live output (SPEC §4.12), the backend's side: while someone watches an exec, subscribe to
its chunks (core NATS, never stored), check each one, and hand it to every watcher's own
bounded queue; announce the watch to the agents as a lease, renewed while it lasts.

Chunks an agent sent are not sent again, so the relay keeps an exec's recent ones (bounded)
while it is watched and for a lease after its last watcher left: a second watcher, or a
page reloaded, starts with them instead of missing what came before it.

Chunks are untrusted input: the size is bounded before decoding, the wire model bounds every
field, and a chunk whose ``pc_id`` or ``exec_id`` is not its subject's (the only pc the
broker let publish there) is dropped and counted. A slow watcher loses its *oldest* chunks
and is told how many; it never slows the others or the subscription. Why core NATS and a
lease: docs/live-output.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from kanade.backend.errors import Unavailable
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.models.wire import (
    MAX_LIVE_LEASE_S,
    MAX_LIVE_TEXT,
    MAX_LIVE_WATCH,
    LiveChunk,
    LiveWatch,
    WireDecodeError,
    decode,
    encode,
)

log = structlog.get_logger(__name__)

LEASE_S: Final = 30.0
"""How long agents publish an exec's output after a watch message (renewed every
:data:`RENEW_S` while someone watches)."""
RENEW_S: Final = 10.0
MAX_CHUNK_BYTES: Final = 16 * MAX_LIVE_TEXT
"""A chunk message larger than this is refused before it is decoded (two streams of
:data:`MAX_LIVE_TEXT` characters, each escaped to at most six bytes, fit well within)."""
CLIENT_MAX_CHUNKS: Final = 256
CLIENT_MAX_BYTES: Final = 1024 * 1024
"""One watcher's queue: beyond either bound its oldest chunks are dropped."""
MAX_WATCHERS: Final = 200
"""Live-output streams one backend serves at once."""
HISTORY_CHUNKS: Final = 256
HISTORY_BYTES: Final = 256 * 1024
"""An exec's recent chunks kept for the next watcher: beyond either bound, the oldest go."""
MAX_EXECS: Final = 256
"""Execs followed at once, with and without watchers (those without are let go first)."""
# What the subscription of one exec may hold for the relay (nats-py drops beyond it).
_SUB_PENDING_MSGS: Final = 4096
_SUB_PENDING_BYTES: Final = 32 * 1024 * 1024

assert LEASE_S <= MAX_LIVE_LEASE_S


class LiveWatcher:
    """One watcher's queue of chunks: bounded, oldest dropped first, never blocking."""

    def __init__(
        self,
        exec_id: str,
        pcs: frozenset[str] | None,
        *,
        max_chunks: int = CLIENT_MAX_CHUNKS,
        max_bytes: int = CLIENT_MAX_BYTES,
    ) -> None:
        self.exec_id = exec_id
        self.pcs = pcs
        self._max_chunks = max_chunks
        self._max_bytes = max_bytes
        self._queue: deque[tuple[LiveChunk, int]] = deque()
        self._bytes = 0
        self._dropped = 0
        self._wake = asyncio.Event()

    def wants(self, chunk: LiveChunk) -> bool:
        return self.pcs is None or chunk.pc_id in self.pcs

    def offer(self, chunk: LiveChunk, size: int) -> int:
        """Queue ``chunk``; how many older ones were dropped to make room."""
        self._queue.append((chunk, size))
        self._bytes += size
        dropped = 0
        while len(self._queue) > self._max_chunks or (
            self._bytes > self._max_bytes and len(self._queue) > 1
        ):
            _, gone = self._queue.popleft()
            self._bytes -= gone
            dropped += 1
        self._dropped += dropped
        self._wake.set()
        return dropped

    def take(self) -> tuple[list[LiveChunk], int]:
        """Every queued chunk and how many were dropped since the last take."""
        chunks = [c for c, _ in self._queue]
        dropped, self._dropped = self._dropped, 0
        self._queue.clear()
        self._bytes = 0
        self._wake.clear()
        return chunks, dropped

    async def wait(self, timeout: float) -> bool:
        """Until something is queued (True) or ``timeout`` passes (False)."""
        if self._queue or self._dropped:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        return bool(self._queue or self._dropped)


@dataclass
class _Watched:
    watchers: set[LiveWatcher] = field(default_factory=set)
    sub: Subscription | None = None
    nc: Client | None = None  # the connection ``sub`` lives on
    history: deque[tuple[LiveChunk, int]] = field(default_factory=deque)
    history_bytes: int = 0
    idle_since: float | None = None  # when its last watcher left (monotonic)

    def remember(self, chunk: LiveChunk, size: int) -> None:
        self.history.append((chunk, size))
        self.history_bytes += size
        while len(self.history) > HISTORY_CHUNKS or self.history_bytes > HISTORY_BYTES:
            _, gone = self.history.popleft()
            self.history_bytes -= gone


Outcome = Callable[[str, int], None]
"""Told ``(outcome, n)``: ``relayed`` / ``refused`` / ``dropped`` chunks (metrics)."""


class LiveRelay:
    """Every exec watched through this backend, with its subscription and its watchers."""

    def __init__(
        self,
        bus: Callable[[], Bus],
        *,
        lease_s: float = LEASE_S,
        max_watchers: int = MAX_WATCHERS,
        clock: Callable[[], float] = time.monotonic,
        on_identity_mismatch: Callable[[str], None] | None = None,
        on_outcome: Outcome | None = None,
    ) -> None:
        """``bus``: the connected bus, or :class:`Unavailable` (the link's getter)."""
        self._bus = bus
        self.lease_s = lease_s
        self.max_watchers = max_watchers
        self._clock = clock
        self._on_identity_mismatch = on_identity_mismatch
        self._on_outcome = on_outcome
        self._execs: dict[str, _Watched] = {}
        self._lock = asyncio.Lock()

    @property
    def watchers(self) -> int:
        return sum(len(w.watchers) for w in self._execs.values())

    def watched(self) -> list[str]:
        """The execs someone watches now."""
        return sorted(e for e, w in self._execs.items() if w.watchers)

    def followed(self) -> list[str]:
        """The execs subscribed to: watched, or left within a lease."""
        return sorted(self._execs)

    def check(self) -> None:
        """:class:`Unavailable` when a new watcher would be refused right now."""
        self._bus()
        if self.watchers >= self.max_watchers:
            raise Unavailable(
                f"this backend already serves {self.max_watchers} live-output streams; "
                "retry later"
            )

    @contextlib.asynccontextmanager
    async def watch(
        self, exec_id: str, pcs: Iterable[str] | None = None
    ) -> AsyncIterator[LiveWatcher]:
        """A watcher of ``exec_id``'s live output (only ``pcs`` when given) until the block
        ends. Raises :class:`Unavailable` while the broker is away or when this backend
        already serves :data:`MAX_WATCHERS` streams."""
        watcher = LiveWatcher(exec_id, frozenset(pcs) if pcs is not None else None)
        async with self._lock:
            self.check()
            bus = self._bus()
            watched = self._execs.get(exec_id)
            if watched is None:
                await self._make_room()
                watched = self._execs[exec_id] = _Watched()
            # What came before, then (nothing awaited in between) whatever arrives next.
            for chunk, size in watched.history:
                if watcher.wants(chunk):
                    watcher.offer(chunk, size)
            watched.watchers.add(watcher)
            watched.idle_since = None
            try:
                fresh = await self._subscribe(exec_id, watched, bus)
            except BaseException:
                self._leave(exec_id, watcher)
                raise
        if fresh:
            await self.announce([exec_id])
        try:
            yield watcher
        finally:
            self._leave(exec_id, watcher)

    async def _make_room(self) -> None:
        """Let go of the execs nobody watches (oldest first) while at :data:`MAX_EXECS`."""
        idle = sorted(
            (w.idle_since, e) for e, w in self._execs.items() if w.idle_since is not None
        )
        while len(self._execs) >= MAX_EXECS and idle:
            await self._drop(idle.pop(0)[1])
        if len(self._execs) >= MAX_EXECS:
            raise Unavailable(f"this backend already follows {MAX_EXECS} execs; retry later")

    async def _subscribe(self, exec_id: str, watched: _Watched, bus: Bus) -> bool:
        """Subscribe on ``bus`` unless already subscribed there; True if it was needed."""
        if watched.sub is not None and watched.nc is bus.nc:
            return False
        watched.sub = await bus.nc.subscribe(
            subjects.live_exec_subjects(exec_id),
            cb=self._on_msg,
            pending_msgs_limit=_SUB_PENDING_MSGS,
            pending_bytes_limit=_SUB_PENDING_BYTES,
        )
        watched.nc = bus.nc
        return True

    def _leave(self, exec_id: str, watcher: LiveWatcher) -> None:
        """The watcher is gone; the exec stays followed for a lease (see the module doc)."""
        watched = self._execs.get(exec_id)
        if watched is None:
            return
        watched.watchers.discard(watcher)
        if not watched.watchers:
            watched.idle_since = self._clock()

    async def _drop(self, exec_id: str) -> None:
        watched = self._execs.pop(exec_id, None)
        if watched is not None and watched.sub is not None:
            with contextlib.suppress(Exception):
                await watched.sub.unsubscribe()

    async def renew(self) -> None:
        """Let go of execs nobody watched for a lease, subscribe again what a new broker
        connection lost, then renew the leases of the watched ones."""
        async with self._lock:
            now = self._clock()
            for exec_id, watched in list(self._execs.items()):
                if watched.idle_since is not None and now - watched.idle_since >= self.lease_s:
                    await self._drop(exec_id)
            try:
                bus = self._bus()
            except Unavailable:
                return
            for exec_id, watched in list(self._execs.items()):
                await self._subscribe(exec_id, watched, bus)
        await self.announce(self.watched())

    async def announce(self, exec_ids: list[str]) -> None:
        """Tell every agent these execs are watched for :attr:`lease_s` more seconds."""
        if not exec_ids:
            return
        try:
            bus = self._bus()
            for i in range(0, len(exec_ids), MAX_LIVE_WATCH):
                batch = exec_ids[i : i + MAX_LIVE_WATCH]
                watch = LiveWatch(exec_ids=batch, for_s=self.lease_s)
                await bus.nc.publish(subjects.LIVE_WATCH_SUBJECT, encode(watch))
        except Exception as exc:  # the next renewal tries again
            log.warning("live-output watch not announced", error=str(exc))

    # --- incoming chunks --------------------------------------------------------------
    async def _on_msg(self, msg: Msg) -> None:
        self.relay(msg.subject, msg.data)

    def relay(self, subject: str, data: bytes) -> None:
        """Check one chunk message and queue it for the exec's watchers."""
        addressed = subjects.parse_live_subject(subject)
        if addressed is None or len(data) > MAX_CHUNK_BYTES:
            self._count("refused")
            log.warning("live-output chunk refused", subject=subject, size=len(data))
            return
        try:
            chunk = decode(LiveChunk, data)
        except WireDecodeError as exc:
            self._count("refused")
            log.warning("bad live-output chunk dropped", subject=subject, error=str(exc))
            return
        if (chunk.pc_id, chunk.exec_id) != addressed:
            # The broker lets an agent publish only under its own pc_id (SPEC §8.1): a
            # payload naming another pc, or another exec than its subject, is not trusted.
            log.warning(
                "live-output chunk does not match its subject",
                subject=subject,
                pc_id=chunk.pc_id,
                exec_id=chunk.exec_id,
            )
            self._count("refused")
            if self._on_identity_mismatch is not None:
                self._on_identity_mismatch("live")
            return
        watched = self._execs.get(chunk.exec_id)
        if watched is None:
            return  # let go of a moment ago
        watched.remember(chunk, len(data))
        dropped = 0
        for watcher in list(watched.watchers):
            if watcher.wants(chunk):
                dropped += watcher.offer(chunk, len(data))
        self._count("relayed")
        if dropped:
            self._count("dropped", dropped)

    def _count(self, outcome: str, n: int = 1) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome, n)

