"""One term of leadership: the loop that runs while this process holds the scheduler
lease — prepared fires out first, the catalog kept current, due schedules ticked, the
next fires prepared — sleeping until the earliest next thing to do (at most a second)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Final

import structlog

from kanade.backend.catalog import dispatch_state
from kanade.backend.catalog.freeze import read_freeze
from kanade.backend.workers.scheduler.ahead import PREPARE_GUARD_S, Ahead
from kanade.backend.workers.scheduler.catalog_watch import RESYNC_S, CatalogWatch, Entry
from kanade.backend.workers.scheduler.context import SchedulerContext
from kanade.backend.workers.scheduler.dispatch import Dispatcher
from kanade.backend.workers.scheduler.lease import Lease
from kanade.backend.workers.scheduler.planning import Planner
from kanade.bus.connection import Bus
from kanade.core.scheduling import DispatchMark, exec_id_for, occurrence_id
from kanade.worker import Worker

log = structlog.get_logger(__name__)

MAX_SLEEP_S: Final = 1.0
"""The loop wakes at least this often (SPEC: tick at least once per second)."""
RESYNC_GUARD_S: Final = 1.0
"""No periodic catalog re-read starts this close before a prepared instant (it is
postponed, at most one more period): it could hold that instant's publish up."""


class Term(Worker):
    name = "scheduler-leader"

    def __init__(self, ctx: SchedulerContext, lease: Lease) -> None:
        super().__init__(interval=MAX_SLEEP_S)
        self._ctx = ctx
        self._lease = lease
        self.marks: dict[str, dict[str, DispatchMark]] = {}
        self.catalog = CatalogWatch(ctx, self.wake)
        # The term starts leading now: what came due before was due while this process
        # did not lead (it was down, starting, or another replica had died holding the
        # lease), and `catchup` decides it — never the late tolerance.
        self.planner = Planner(ctx, self.marks, up_since=ctx.clock())
        self.dispatcher = Dispatcher(ctx, self.marks)
        self.ahead = Ahead(ctx, lease, self.catalog, self.planner, self.dispatcher)
        self._last_resync: float | None = None

    async def setup(self) -> None:
        bus = self._ctx.bus()
        log.info("scheduler leading", holder=self._lease.holder, local_tz=str(self._ctx.local_tz))
        await self.catalog.subscribe(bus)

    async def teardown(self) -> None:
        await self.catalog.unsubscribe()

    async def step(self) -> bool | None:
        if not self._lease.held:
            self.stop()  # the lease loop steps us down
            return None
        try:
            await self._pass(self._ctx.bus())
        except Exception:
            # A failed pass ends the term: what it changed in memory (last ticks advanced
            # for fires never claimed) is dropped, and the next term re-reads what is
            # stored, like a restart.
            self.stop()
            raise
        return None

    async def _pass(self, bus: Bus) -> None:
        last_resync = self._last_resync
        if last_resync is None:
            last_resync = await self._resync(bus)
        # Fires whose instant has come go out before anything else is looked at.
        await self.ahead.fire_prepared(bus)
        since = time.monotonic() - last_resync
        if since > RESYNC_S and (
            not self.ahead.instant_within(RESYNC_GUARD_S) or since > 2 * RESYNC_S
        ):
            await self._resync(bus)
        if self.catalog.pending:
            changes = await self.catalog.apply_changes(bus)
            self.ahead.reconsider()
            await self.ahead.withdraw_stale(changes.jobs, freeze_changed=changes.freeze)
            if changes.schedules:
                await self.catalog.persist_new(bus)
        now = self._ctx.clock()
        due = self.catalog.due(now, self.ahead.prepared)
        if due:
            await self._tick(bus, due, now)
        await self.ahead.prepare(bus)
        await self.catalog.refresh_idle_ticks(bus, self._ctx.clock())

    async def _resync(self, bus: Bus) -> float:
        await self.catalog.resync(bus)
        if not self.marks:
            self.marks.update(await dispatch_state.load_marks(bus))
        # A change notification lost (reconnect) shows here as a new generation or a
        # missing entry: what was prepared from the old definition is withdrawn.
        await self.ahead.withdraw_stale(set(), freeze_changed=False)
        await self.catalog.persist_new(bus)
        self._last_resync = time.monotonic()
        return self._last_resync

    def next_delay(self, more: bool | None, failed: bool) -> float:
        if failed or self._last_resync is None:
            return 0.0
        return self.sleep_s()

    def sleep_s(self) -> float:
        """Seconds until the earliest next thing to do: a prepared instant, the moment a
        fire may be prepared, a due time — at most :data:`MAX_SLEEP_S`."""
        now = self._ctx.clock()
        timeout = MAX_SLEEP_S
        # While a prepared instant is close, preparing waits for it (see Ahead.prepare):
        # wake for the instant, not for preparations that cannot start yet.
        guarded = self.ahead.instant_within(PREPARE_GUARD_S)
        upcoming: list[datetime] = []
        for e in self.catalog.entries.values():
            if e.next_due is None:
                continue
            prepared = self.ahead.prepared.get(e.schedule.id)
            if prepared is not None:
                upcoming.append(prepared.nominal)
            elif not guarded and self.ahead.may_prepare(e):
                upcoming.append(e.next_due - self._ctx.prepare_ahead)
            else:
                upcoming.append(e.next_due)
        if upcoming:
            timeout = min(timeout, max(0.0, (min(upcoming) - now).total_seconds()))
        return timeout

    # --- one tick --------------------------------------------------------------------------
    async def _tick(self, bus: Bus, due: list[Entry], now: datetime) -> None:
        ctx = self._ctx
        ctx.ticks += 1
        t_start = time.perf_counter()
        freeze = await read_freeze(bus)
        decided = self.planner.decide(due, now, freeze)
        rows = decided.rows
        t0 = time.perf_counter()
        planned = await self.planner.plan(bus, decided.fires, now, rows) if decided.fires else []
        t1 = time.perf_counter()
        # Missed, skipped, or skipped while planned (job gone, max_concurrent): not fired.
        not_fired = {
            exec_id_for(occurrence_id(sid, nominal)) for sid, nominal in decided.firsts.items()
        } - {p.record.exec_id for p in planned}
        claimed, republish = await self.dispatcher.claim(bus, planned, rows, now, not_fired)
        t2 = time.perf_counter()
        await self.dispatcher.publish(
            bus, [p for p in planned if p.record.exec_id in claimed | republish]
        )
        t3 = time.perf_counter()
        if planned:
            lates = sorted(p.fire.late.total_seconds() for p in planned)
            log.info(
                "scheduled fires dispatched",
                fires=len(claimed),
                republished=len(republish),
                duplicates=len(planned) - len(claimed) - len(republish),
                schedules=sorted({p.entry.schedule.id for p in planned})[:5],
                decided_late_ms=round(lates[len(lates) // 2] * 1000, 1),
                tick_ms=round((t3 - t_start) * 1000, 1),
            )
        if t3 - t_start > 0.1:
            log.info(
                "slow scheduler tick",
                due=len(due),
                fires=len(planned),
                decide_ms=round((t0 - t_start) * 1000, 1),
                plan_ms=round((t1 - t0) * 1000, 1),
                claim_ms=round((t2 - t1) * 1000, 1),
                publish_ms=round((t3 - t2) * 1000, 1),
            )
        await self.catalog.persist_ticks(bus, due)
        for row in rows:
            if row.result in ("fired", "skipped", "missed"):
                ctx.metrics.fires.labels(result=row.result).inc(row.count)
