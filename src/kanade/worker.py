"""The one shape of every background loop, in the agent and the backend.

A :class:`Worker` runs :meth:`Worker.step` forever: after each step it waits for its interval
or an explicit :meth:`Worker.wake`, whichever comes first; a step that raises is logged and
retried with capped exponential backoff, so one bad pass never kills the loop and a persistent
fault does not spin. Subclasses write only ``step`` (and, if they need them, ``setup`` /
``teardown``); nobody writes ``while True: … sleep`` again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from abc import ABC, abstractmethod

log = logging.getLogger(__name__)

# Backoff after a failed step: doubles from BACKOFF_MIN_S up to BACKOFF_MAX_S; a successful
# step resets it. Long enough not to hammer a broken database, short enough that a transient
# fault (broker restart, locked SQLite file) costs seconds, not minutes.
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 10.0


class Worker(ABC):
    """A background loop: ``step`` → wait (interval or wake-up) → ``step`` …"""

    #: Name in logs; defaults to the class name.
    name: str = ""

    def __init__(self, *, interval: float) -> None:
        self.interval = interval
        self._wake = asyncio.Event()
        self._stopping = False
        self._failures = 0

    @abstractmethod
    async def step(self) -> bool | None:
        """One pass. Return ``True`` when more work is known to be waiting: the next pass
        then starts at once instead of after the interval."""

    async def setup(self) -> None:  # noqa: B027 - optional hook
        """Runs once before the first step (override if needed)."""

    async def teardown(self) -> None:  # noqa: B027 - optional hook
        """Runs once when the loop ends, also on cancellation (override if needed)."""

    def wake(self) -> None:
        """Start the next step now rather than at the end of the interval."""
        self._wake.set()

    def stop(self) -> None:
        """Let the loop end after the current step (cancellation works too)."""
        self._stopping = True
        self._wake.set()

    @property
    def label(self) -> str:
        return self.name or type(self).__name__

    def next_delay(self, more: bool | None, failed: bool) -> float:
        """Seconds to wait before the next step."""
        if failed:
            return min(BACKOFF_MAX_S, BACKOFF_MIN_S * float(2 ** max(0, self._failures - 1)))
        return 0.0 if more else self.interval

    async def run(self) -> None:
        """The loop itself; cancel the task (or call :meth:`stop`) to end it."""
        await self.setup()
        try:
            while not self._stopping:
                failed = False
                more: bool | None = None
                try:
                    more = await self.step()
                    self._failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception:
                    failed = True
                    self._failures += 1
                    log.exception(
                        "worker %s: step failed (%d in a row)", self.label, self._failures
                    )
                await self._pause(self.next_delay(more, failed), backing_off=failed)
        finally:
            await self.teardown()

    async def _pause(self, delay: float, *, backing_off: bool) -> None:
        if self._wake.is_set() and not backing_off:
            # A wake-up that arrived during the step: run again now.
            self._wake.clear()
            return
        if delay <= 0:
            await asyncio.sleep(0)  # let other tasks run between back-to-back steps
            return
        # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that meets
        # the wake-up, and the loop then outlives the shutdown that cancelled it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None if math.isinf(delay) else delay):
                await self._wake.wait()
        self._wake.clear()
