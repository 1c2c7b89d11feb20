"""A strictly first-come-first-served concurrency limit whose size can change live.

asyncio.Semaphore is neither resizable nor strictly FIFO; commands must start
in arrival order (SPEC §3.4) and ``max_local_concurrent`` is applied live from
KV config (SPEC §3.7).
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class FifoLimiter:
    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    def set_limit(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._active < self._limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self._active += 1
                fut.set_result(None)

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is queued; never waits."""
        if self._active < self._limit and not self._waiters:
            self._active += 1
            return True
        return False

    async def acquire(self) -> None:
        if self._active < self._limit and not self._waiters:
            self._active += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # We were granted a slot just as we were cancelled: give it back.
                self.release()
            raise

    def release(self) -> None:
        self._active -= 1
        self._wake()

    async def __aenter__(self) -> FifoLimiter:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
