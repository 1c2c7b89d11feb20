"""Competing for the scheduler lease (:mod:`.lease`) forever, and leading while it is
held: a :class:`.term.Term` runs for as long as the lease is renewed and is ended (its
state dropped) the moment it is not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from prometheus_client import Gauge

from kanade.backend.workers.scheduler.lease import Lease
from kanade.worker import Worker

log = structlog.get_logger(__name__)

RETRY_SOON_S = 0.5
"""Lease attempts while the broker cannot be reached (a backend that just started)."""


class Leadership(Worker):
    name = "scheduler-lease"

    def __init__(
        self,
        lease: Lease,
        lead: Callable[[], Worker],
        *,
        stepped_down: Callable[[], None],
        leader_gauge: Gauge,
    ) -> None:
        super().__init__(interval=lease.renew_interval_s)
        self.lease = lease
        self._lead = lead
        self._stepped_down = stepped_down
        self._gauge = leader_gauge
        self._task: asyncio.Task[None] | None = None
        self._retry_soon = False

    @property
    def is_leader(self) -> bool:
        return self._task is not None and not self._task.done() and self.lease.held

    async def step(self) -> bool | None:
        try:
            if self.lease.held or self._task is not None:
                ok = await self.lease.renew()
            else:
                ok = await self.lease.try_acquire()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # broker away: the lease lapses by itself
            ok = self.lease.held
            failed = True
            log.debug("scheduler lease attempt failed", error=str(exc))
        else:
            failed = False
        if ok and self._task is None:
            self._task = asyncio.create_task(self._lead().run(), name="scheduler-leader")
        elif self._task is not None and (not self.lease.held or self._task.done()):
            await self.step_down()
        self._gauge.set(1 if self.is_leader else 0)
        # Not connected yet: retry soon, so a fresh backend leads as soon as it can.
        self._retry_soon = failed and not ok
        return None

    def next_delay(self, more: bool | None, failed: bool) -> float:
        pause = self.lease.renew_interval_s
        return min(pause, RETRY_SOON_S) if self._retry_soon else pause

    async def step_down(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        elif not task.cancelled() and task.exception() is not None:
            log.warning("scheduler loop ended with an error", error=str(task.exception()))
        self._stepped_down()

    async def resign(self) -> None:
        """Stop competing: end the term and release the lease, so a standby takes over
        within one poll instead of a TTL."""
        self.stop()
        await self.step_down()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.lease.release(), 5.0)
        self._gauge.set(0)
