"""Fires prepared ahead of their instant: a calendar/cron occurrence due within
``prepare_ahead`` is decided as of its nominal time, built and its exec row claimed, so
that at the instant only its messages are published; a prepared fire that what it was
decided on no longer supports is withdrawn. Why and what is never prepared:
``docs/scheduler.md``, "Prepared ahead"."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import structlog

from kanade.backend.catalog.freeze import read_freeze
from kanade.backend.workers.scheduler.building import Planned
from kanade.backend.workers.scheduler.catalog_watch import CatalogWatch, Entry
from kanade.backend.workers.scheduler.context import SchedulerContext
from kanade.backend.workers.scheduler.dispatch import Dispatcher
from kanade.backend.workers.scheduler.lease import Lease
from kanade.backend.workers.scheduler.planning import Planner
from kanade.bus.connection import Bus
from kanade.core.instants import format_instant
from kanade.core.scheduling import AheadFire, Freeze, decide_ahead, recheck_at_instant

log = structlog.get_logger(__name__)

PREPARE_AHEAD: Final = timedelta(seconds=2)
"""Calendar/cron occurrences due within this long are prepared before their instant
(1 000 take ≈ 0.1-0.4 s to prepare on a 2-core machine, so this leaves room)."""
PREPARE_GUARD_S: Final = 0.5
"""No preparation starts this close before an instant already prepared: it could still be
running when that instant comes and hold its publish up."""


@dataclass
class Prepared:
    """A fire prepared ahead of its instant: built, and its exec row claimed."""

    planned: Planned
    ahead: AheadFire
    generation: int
    republish: bool
    """The row existed already (claimed by a previous run of this process or another
    replica) and is young: publish it again for the broker to deduplicate, and never
    delete that row."""
    freeze: Freeze | None
    reconnects: int

    @property
    def schedule_id(self) -> str:
        return self.planned.entry.schedule.id

    @property
    def nominal(self) -> datetime:
        return self.ahead.fire.nominal

    @property
    def job_id(self) -> str:
        return self.planned.entry.schedule.job_id


def reconnects(bus: Bus) -> int:
    """How often the connection was re-established (notifications may be lost across)."""
    return int(bus.nc.stats.get("reconnects", 0))


class Ahead:
    def __init__(
        self,
        ctx: SchedulerContext,
        lease: Lease,
        catalog: CatalogWatch,
        planner: Planner,
        dispatcher: Dispatcher,
    ) -> None:
        self._ctx = ctx
        self._lease = lease
        self._catalog = catalog
        self._planner = planner
        self._dispatcher = dispatcher
        self.prepared: dict[str, Prepared] = {}
        self._no_prep: dict[str, datetime] = {}
        """schedule id → the nominal time found not preparable (decided at the instant)."""

    def instant_within(self, seconds: float) -> bool:
        """A prepared instant is due within ``seconds``."""
        if not self.prepared:
            return False
        soonest = min(p.nominal for p in self.prepared.values())
        return (soonest - self._ctx.clock()).total_seconds() < seconds

    def may_prepare(self, entry: Entry) -> bool:
        if self._ctx.prepare_ahead <= timedelta(0) or entry.next_due is None:
            return False
        if entry.plan.is_reconcile or self._no_prep.get(entry.schedule.id) == entry.next_due:
            return False
        constraints = entry.schedule.constraints
        return constraints is None or not constraints.max_concurrent

    def reconsider(self) -> None:
        """Whatever kept an occurrence from being prepared (a gate, the job, the freeze)
        may be different now: look at every one again."""
        self._no_prep.clear()

    async def prepare(self, bus: Bus) -> None:
        """Prepare every calendar/cron occurrence due within ``prepare_ahead``: decide it
        as of its nominal time, build it, claim its exec row. Nothing is published."""
        ctx = self._ctx
        if ctx.prepare_ahead <= timedelta(0) or self.instant_within(PREPARE_GUARD_S):
            return
        now = ctx.clock()
        horizon = now + ctx.prepare_ahead
        candidates = [
            e
            for e in self._catalog.entries.values()
            if e.next_due is not None
            and now < e.next_due <= horizon
            and e.schedule.id not in self.prepared
            and self.may_prepare(e)
        ]
        if not candidates:
            return
        t0 = time.perf_counter()
        # Snapshots the fires are decided with. A freeze, job or schedule change notified
        # from now on is processed after this preparation and withdraws what it affects;
        # a reconnect (notifications possibly lost) sends them to the ordinary tick.
        seen_reconnects = reconnects(bus)
        freeze = await read_freeze(bus)
        fires: list[tuple[Entry, AheadFire]] = []
        for entry in candidates:
            assert entry.next_due is not None
            ahead = decide_ahead(
                entry.plan,
                last_tick=entry.last_tick,
                nominal=entry.next_due,
                local_tz=ctx.local_tz,
                freeze=freeze,
                late_tolerance=ctx.late_tolerance,
            )
            if ahead is None:  # gated, skipped or missed: the tick at the instant decides
                self._no_prep[entry.schedule.id] = entry.next_due
            else:
                fires.append((entry, ahead))
        if not fires:
            return
        by_sid = {e.schedule.id: a for e, a in fires}
        deferred: list[Entry] = []
        planned = await self._planner.plan(
            bus, [(e, a.fire) for e, a in fires], now, [], deferred=deferred
        )
        for entry in deferred:
            self._no_prep[entry.schedule.id] = by_sid[entry.schedule.id].fire.nominal
        if not planned:
            return
        t1 = time.perf_counter()
        claimed, young = await self._dispatcher.claim_ahead(planned, now)
        for p in planned:
            exec_id = p.record.exec_id
            sid = p.entry.schedule.id
            if exec_id not in claimed and exec_id not in young:
                # Claimed long ago (fired before a clock step, or claimed by a leader that
                # died before publishing): the tick at the instant sorts it out.
                self._no_prep[sid] = p.fire.nominal
                continue
            self.prepared[sid] = Prepared(
                p, by_sid[sid], p.entry.generation, exec_id in young, freeze, seen_reconnects
            )
        log.debug(
            "scheduled fires prepared",
            fires=len(planned),
            claimed=len(claimed),
            first_nominal=format_instant(min(p.fire.nominal for p in planned)),
            plan_ms=round((t1 - t0) * 1000, 1),
            claim_ms=round((time.perf_counter() - t1) * 1000, 1),
        )

    def stale_reason(self, p: Prepared, now: datetime, seen_reconnects: int) -> str | None:
        """Why a prepared fire must not go out as prepared now; None when it may. Cheap
        (no I/O): it runs at the instant, in front of the publish."""
        catalog = self._catalog
        entry = catalog.entries.get(p.schedule_id)
        if (
            entry is None
            or entry.generation != p.generation
            or catalog.schedule_notified(p.schedule_id)
        ):
            return "the schedule changed"
        if catalog.job_notified(p.job_id):
            return f"job {p.job_id!r} changed"
        if catalog.freeze_notified:
            return "the fleet freeze changed"
        if seen_reconnects != p.reconnects:
            return "the broker connection was re-established (a change may have gone unseen)"
        return recheck_at_instant(
            entry.plan,
            p.ahead.fire,
            now=now,
            freeze=p.freeze,
            late_tolerance=self._ctx.late_tolerance,
        )

    async def withdraw_stale(self, jobs: set[str], *, freeze_changed: bool) -> None:
        """Withdraw prepared fires decided on what changed (before their instant)."""
        stale: list[tuple[Prepared, str]] = []
        for p in self.prepared.values():
            entry = self._catalog.entries.get(p.schedule_id)
            if entry is None or entry.generation != p.generation:
                stale.append((p, "the schedule changed"))
            elif p.job_id in jobs:
                stale.append((p, f"job {p.job_id!r} changed"))
            elif freeze_changed:
                stale.append((p, "the fleet freeze changed"))
        if stale:
            await self.withdraw(stale)

    async def withdraw(self, items: list[tuple[Prepared, str]]) -> None:
        """Forget prepared fires and delete the exec rows they claimed, so the occurrence
        is decided afresh (prepared again, or by the ordinary tick at its instant)."""
        for p, why in items:
            if self.prepared.get(p.schedule_id) is p:
                del self.prepared[p.schedule_id]
            self._no_prep.pop(p.schedule_id, None)
            log.info(
                "prepared fire withdrawn",
                schedule_id=p.schedule_id,
                nominal=format_instant(p.nominal),
                reason=why,
            )
        # A row found claimed (republish) belongs to an earlier fire of the occurrence
        # (a previous run, another replica) and may have gone out: never ours to delete.
        ours = [p.planned.record.exec_id for p, _ in items if not p.republish]
        if not ours:
            return
        try:
            await self._dispatcher.release(ours)
        except Exception as exc:
            # The rows stay claimed; the ordinary tick then finds them claimed and never
            # published: it publishes the occurrence as re-decided, or releases the claim
            # if it does not fire it. Only a schedule disabled or deleted meanwhile (no
            # tick decides it again) leaves a row behind, pending until the reaper
            # expires it — never a wrong fire.
            log.error("claims of withdrawn fires not released", error=str(exc), execs=ours)

    async def fire_prepared(self, bus: Bus) -> None:
        """Publish the prepared fires whose instant has come."""
        if not self.prepared:
            return
        ctx = self._ctx
        now = ctx.clock()
        ready = [p for p in self.prepared.values() if p.nominal <= now]
        if not ready:
            return
        for p in ready:
            del self.prepared[p.schedule_id]
        if not self._lease.held:
            # Nothing goes out. The claimed rows stay: whoever leads next re-decides these
            # occurrences (their ticks were not persisted), finds the rows claimed and
            # never published, and publishes them (see Dispatcher.claim).
            log.warning("lease lost before prepared fires were due", fires=len(ready))
            return
        ctx.ticks += 1
        seen_reconnects = reconnects(bus)
        go: list[Prepared] = []
        back: list[tuple[Prepared, str]] = []
        for p in ready:
            why = self.stale_reason(p, now, seen_reconnects)
            if why is None:
                go.append(p)
            else:
                back.append((p, why))
        t0 = time.perf_counter()
        lateness = await self._dispatcher.publish(bus, [p.planned for p in go])
        t1 = time.perf_counter()
        if back:
            # Still due: the ordinary tick right after this decides them at the instant.
            await self.withdraw(back)
        if not go:
            return
        persist: list[Entry] = []
        for p in go:
            # stale_reason found it current; entries change only in the loop body, i.e.
            # not while this runs.
            entry = self._catalog.entries[p.schedule_id]
            entry.last_tick = max(entry.last_tick, p.ahead.last_tick)
            entry.next_due = p.ahead.next_fire
            persist.append(entry)
        await self._catalog.persist_ticks(bus, persist)
        ctx.metrics.fires.labels(result="fired").inc(sum(1 for p in go if not p.republish))
        sent = [late for late in lateness if late is not None]
        log.info(
            "scheduled fires dispatched",
            fires=len(go),
            prepared=True,
            republished=sum(1 for p in go if p.republish),
            withdrawn=len(back),
            schedules=sorted(p.schedule_id for p in go)[:5],
            published_ms=round((t1 - t0) * 1000, 1),
            max_late_ms=round(max(sent) * 1000, 1) if sent else None,
        )
