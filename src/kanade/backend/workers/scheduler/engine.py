"""The central scheduler (SPEC §4.4): fires every enabled ``runs_on: backend`` schedule.

:class:`Scheduler` composes the parts: :class:`.leadership.Leadership` competes for the
lease and, while it is held, runs a :class:`.term.Term` — the catalog watch, the tick
(:mod:`.planning`, :mod:`.dispatch`) and fires prepared ahead (:mod:`.ahead`). How it
fires each occurrence once and on time: ``docs/scheduler.md``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Any

import structlog
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry

from kanade.backend.catalog import dispatch_state
from kanade.backend.store.database import Database
from kanade.backend.workers.scheduler.ahead import PREPARE_AHEAD
from kanade.backend.workers.scheduler.context import SchedulerContext
from kanade.backend.workers.scheduler.leadership import Leadership
from kanade.backend.workers.scheduler.lease import Lease
from kanade.backend.workers.scheduler.metrics import SchedulerMetrics
from kanade.backend.workers.scheduler.term import Term
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.dispatch import Budgets
from kanade.core.instants import Clock, system_clock
from kanade.core.scheduling import DEFAULT_LATE_TOLERANCE, RECONCILE_POLL
from kanade.core.scheduling.timezones import local_zone

log = structlog.get_logger(__name__)


class Scheduler:
    def __init__(
        self,
        db: Database,
        bus: Callable[[], Bus],
        budgets: Budgets,
        *,
        registry: CollectorRegistry | None = None,
        reconcile_poll: timedelta = RECONCILE_POLL,
        lease_ttl_s: float = 10.0,
        lease_key: str = dispatch_state.LEASE_KEY,
        late_tolerance: timedelta = DEFAULT_LATE_TOLERANCE,
        clock: Clock = system_clock,
        local_tz: tzinfo | None = None,
        holder: str | None = None,
        prepare_ahead: timedelta = PREPARE_AHEAD,
    ) -> None:
        self._bus = bus
        self.metrics = SchedulerMetrics(registry)
        self._ctx = SchedulerContext(
            db=db,
            bus=bus,
            budgets=budgets,
            metrics=self.metrics,
            clock=clock,
            local_tz=local_tz or local_zone(),
            reconcile_poll=reconcile_poll,
            late_tolerance=late_tolerance,
            prepare_ahead=prepare_ahead,
        )
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = Lease(self._dispatch_kv, self.holder, ttl_s=lease_ttl_s, key=lease_key)
        self._term: Term | None = None
        self._leadership = Leadership(
            self.lease,
            self._new_term,
            stepped_down=self._term_ended,
            leader_gauge=self.metrics.leader,
        )

    # --- settings (read by every pass, so they may be changed on a running scheduler) -----
    @property
    def reconcile_poll(self) -> timedelta:
        return self._ctx.reconcile_poll

    @property
    def local_tz(self) -> tzinfo:
        return self._ctx.local_tz

    @property
    def late_tolerance(self) -> timedelta:
        return self._ctx.late_tolerance

    @property
    def prepare_ahead(self) -> timedelta:
        """How long before its instant a fire is prepared (0 = never: every fire is
        decided, built and claimed at its instant)."""
        return self._ctx.prepare_ahead

    @prepare_ahead.setter
    def prepare_ahead(self, value: timedelta) -> None:
        self._ctx.prepare_ahead = value

    @property
    def ticks(self) -> int:
        return self._ctx.ticks

    # --- public --------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self._leadership.is_leader

    def status(self) -> dict[str, Any]:
        term = self._term
        return {
            "holder": self.holder,
            "leader": self.is_leader,
            "other_holder": self.lease.other_holder,
            "schedules": len(term.catalog.entries) if self.is_leader and term else None,
            "reconcile_poll_s": self.reconcile_poll.total_seconds(),
            "local_tz": str(getattr(self.local_tz, "key", self.local_tz)),
            "prepare_ahead_s": self.prepare_ahead.total_seconds(),
        }

    def prepared(self) -> dict[str, datetime]:
        """schedule id → nominal time of every fire prepared and waiting for its instant."""
        term = self._term
        return {} if term is None else {sid: p.nominal for sid, p in term.ahead.prepared.items()}

    def wake(self) -> None:
        if self._term is not None:
            self._term.wake()

    async def run(self) -> None:
        """Compete for the lease forever; lead while holding it."""
        await self._leadership.run()

    async def stop(self) -> None:
        await self._leadership.resign()

    # --- terms ---------------------------------------------------------------------------
    def _new_term(self) -> Term:
        self._term = Term(self._ctx, self.lease)
        return self._term

    def _term_ended(self) -> None:
        # Prepared fires are dropped unpublished with their rows claimed: their ticks were
        # not persisted, so the next leader (maybe us again) re-decides those occurrences,
        # finds the rows young and publishes them.
        self._term = None
        self.metrics.schedules.set(0)
        log.info("scheduler stepped down", holder=self.holder)

    async def _dispatch_kv(self) -> KeyValue:
        return await self._bus().kv(subjects.KV_DISPATCH)
