"""Retrying an async step: attempts, capped exponential backoff with full jitter, a deadline.

Full jitter (AWS architecture blog, 2015): the n-th wait is uniform in
``[0, min(cap, base * 2**n)]``, so a fleet that failed together does not retry together.
Every retry loop of the processes uses :func:`retry` (or :class:`Backoff` when the loop must
do more between attempts than wait); nobody writes ``for attempt in range(…): … sleep``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["Backoff", "retry"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Backoff:
    """Exponential backoff with full jitter."""

    def __init__(self, base: float = 0.1, cap: float = 5.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)  # no float overflow after days of retrying
        return random.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


async def retry(
    step: Callable[[], Awaitable[T]],
    *,
    attempts: int | None = None,
    base: float = 0.1,
    cap: float = 5.0,
    deadline: float | None = None,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> T:
    """``await step()`` until it returns, and return its result.

    A failure in ``retry_on`` is retried after a jittered backoff (``base``, ``cap``); any
    other exception — and cancellation — propagates at once. It gives up, re-raising the
    last failure, after ``attempts`` calls (None: no limit) or when the next wait would end
    past ``deadline`` seconds from the first call (None: no deadline); the last wait is
    shortened to end at the deadline. ``on_retry(attempt, error, delay)`` is told before
    each wait (for logging).
    """
    if attempts is not None and attempts < 1:
        raise ValueError("attempts must be >= 1")
    give_up_at = None if deadline is None else monotonic() + deadline
    backoff = Backoff(base, cap)
    attempt = 0
    while True:
        attempt += 1
        try:
            return await step()
        except retry_on as exc:
            if attempts is not None and attempt >= attempts:
                raise
            delay = backoff.next_delay()
            if give_up_at is not None:
                left = give_up_at - monotonic()
                if left <= 0:
                    raise
                delay = min(delay, left)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            else:
                log.debug("attempt %d failed (%r); retrying in %.2fs", attempt, exc, delay)
            await sleep(delay)
