"""The leader's view of the schedule catalog: every enabled ``runs_on: backend`` schedule
with its plan and ``last_tick``, read in full on taking the lease and every
:data:`RESYNC_S`, and kept current in between by core subscriptions to the schedules, jobs
and freeze buckets (see ``docs/scheduler.md``)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

import structlog
from nats.aio.subscription import Subscription

from kanade.backend.catalog import dispatch_state
from kanade.backend.catalog.schedules import decode_schedule
from kanade.backend.workers.scheduler.context import SchedulerContext
from kanade.bus.connection import Bus
from kanade.bus.kv import KvChange, subscribe_changes
from kanade.bus.kvsigned import signed_by
from kanade.bus.kvsnapshot import kv_changes
from kanade.core import subjects
from kanade.core.instants import format_instant
from kanade.core.models.schedule import Schedule
from kanade.core.scheduling import Plan, lower, next_fire

log = structlog.get_logger(__name__)

RESYNC_S: Final = 30.0
"""Full re-read of the catalog, in case a change notification was lost (reconnect)."""
TICK_REFRESH: Final = timedelta(hours=6)
"""Idle schedules get their ``last_tick`` advanced and re-persisted this often, so the key
never ages out of the bucket (30-day TTL) and a restart does not rescan months."""


@dataclass
class Entry:
    schedule: Schedule
    plan: Plan
    last_tick: datetime
    next_due: datetime | None
    persisted: datetime | None = None
    generation: int = 0
    """Changes whenever the schedule's definition changes (not on a re-read of the same
    definition): a fire prepared from another generation is stale."""


@dataclass
class Changes:
    """What :meth:`CatalogWatch.apply_changes` took in."""

    schedules: bool = False
    jobs: set[str] = field(default_factory=set)
    freeze: bool = False


def wanted(schedule: Schedule) -> bool:
    return schedule.enabled and schedule.runs_on == "backend"


class CatalogWatch:
    def __init__(self, ctx: SchedulerContext, wake: Callable[[], None]) -> None:
        self._ctx = ctx
        self._wake = wake
        self.entries: dict[str, Entry] = {}
        self._changes: dict[str, bytes | None] = {}
        self._job_changes: set[str] = set()
        self._freeze_changed = False
        self._generations = itertools.count(1)
        self._subs: list[Subscription] = []

    # --- notifications -----------------------------------------------------------------
    async def subscribe(self, bus: Bus) -> None:
        async def on_schedule(change: KvChange) -> None:
            # Only what this backend signed becomes signed commands (SPEC §8.2).
            if signed_by(bus.signer, subjects.KV_SCHEDULES, change, self._ctx.clock()):
                self._changes[change.key] = change.value
                self._wake()

        # Jobs and the freeze are read when a fire is decided; these notifications tell
        # when a fire prepared ahead was decided on what is no longer true.
        async def on_job(change: KvChange) -> None:
            self._job_changes.add(change.key)
            self._wake()

        async def on_freeze(change: KvChange) -> None:
            self._freeze_changed = True
            self._wake()

        self._subs = [
            await subscribe_changes(bus.nc, subjects.KV_SCHEDULES, on_schedule),
            await subscribe_changes(bus.nc, subjects.KV_JOBS, on_job),
            await subscribe_changes(bus.nc, subjects.KV_FREEZE, on_freeze),
        ]

    async def unsubscribe(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    @property
    def pending(self) -> bool:
        """Changes notified and not applied yet."""
        return bool(self._changes or self._job_changes or self._freeze_changed)

    def schedule_notified(self, schedule_id: str) -> bool:
        return schedule_id in self._changes

    def job_notified(self, job_id: str) -> bool:
        return job_id in self._job_changes

    @property
    def freeze_notified(self) -> bool:
        return self._freeze_changed

    # --- reading the catalog -----------------------------------------------------------
    async def resync(self, bus: Bus) -> None:
        """Read every schedule and stored ``last_tick`` again."""
        self._changes.clear()
        snapshot = await kv_changes(bus.js, subjects.KV_SCHEDULES)
        ticks = await dispatch_state.load_ticks(bus)
        now = self._ctx.clock()
        seen: set[str] = set()
        for change in snapshot:
            key, raw = change.key, change.value
            if not signed_by(bus.signer, subjects.KV_SCHEDULES, change, now):
                if key in self.entries:
                    seen.add(key)  # keeps what it had: an unsigned write changes nothing
                continue
            if raw is None:
                continue
            try:
                schedule = decode_schedule(raw)
            except ValueError as exc:
                log.warning("unreadable schedule skipped", schedule_id=key, error=str(exc))
                continue
            if not wanted(schedule):
                continue
            seen.add(schedule.id)
            self.register(schedule, ticks.get(schedule.id), now)
        for sid in set(self.entries) - seen:
            del self.entries[sid]
        self._ctx.metrics.schedules.set(len(self.entries))

    async def apply_changes(self, bus: Bus) -> Changes:
        """Apply the schedule edits notified since the last call; what changed."""
        # Taken (and cleared) before any await: what is notified meanwhile is kept for the
        # next round, so a fire prepared in between is checked against it too.
        changes, self._changes = self._changes, {}
        jobs, self._job_changes = self._job_changes, set()
        freeze_changed, self._freeze_changed = self._freeze_changed, False
        if changes:
            dispatch = await bus.kv(subjects.KV_DISPATCH)
            now = self._ctx.clock()
            for sid, raw in changes.items():
                schedule: Schedule | None = None
                if raw is not None:
                    try:
                        schedule = decode_schedule(raw)
                    except ValueError as exc:
                        log.warning("unreadable schedule skipped", schedule_id=sid, error=str(exc))
                if schedule is None or not wanted(schedule):
                    if self.entries.pop(sid, None) is not None:
                        log.info("schedule unregistered", schedule_id=sid)
                    continue
                self.register(schedule, await dispatch_state.get_tick(dispatch, sid), now)
            self._ctx.metrics.schedules.set(len(self.entries))
        return Changes(bool(changes), jobs, freeze_changed)

    def register(self, schedule: Schedule, stored_tick: datetime | None, now: datetime) -> None:
        """(Re-)register a schedule. ``last_tick`` = the newer of what we hold and what is
        stored (the API resets it to "now" when a schedule is created or re-enabled, so
        nothing from before that is fired); a schedule never ticked starts now."""
        plan = lower(schedule, reconcile_poll=self._ctx.reconcile_poll)
        old = self.entries.get(schedule.id)
        candidates = [t for t in (stored_tick, old.last_tick if old else None) if t is not None]
        last_tick = max(candidates) if candidates else now
        persisted = stored_tick if stored_tick is not None else (old.persisted if old else None)
        same = old is not None and old.schedule == schedule
        generation = old.generation if old is not None and same else next(self._generations)
        entry = Entry(
            schedule,
            plan,
            last_tick,
            next_fire(plan, last_tick, self._ctx.local_tz),
            persisted,
            generation,
        )
        if old is None:
            log.info(
                "schedule registered",
                schedule_id=schedule.id,
                shape=schedule.when.shape,
                last_tick=format_instant(last_tick),
                next_due=None if entry.next_due is None else format_instant(entry.next_due),
            )
        self.entries[schedule.id] = entry

    def due(self, now: datetime, prepared: Container[str]) -> list[Entry]:
        """Entries due at ``now`` that no fire prepared ahead stands for."""
        return [
            e
            for e in self.entries.values()
            if e.next_due is not None and e.next_due <= now and e.schedule.id not in prepared
        ]

    # --- persisting last ticks ---------------------------------------------------------
    async def persist_new(self, bus: Bus) -> None:
        fresh = [e for e in self.entries.values() if e.persisted is None]
        if fresh:
            await self.persist_ticks(bus, fresh)

    async def persist_ticks(self, bus: Bus, entries: list[Entry]) -> None:
        """Store the entries' ``last_tick``s, pipelined; one that fails is retried alone
        (and raises if that fails too, as a KV put would)."""
        if not entries:
            return
        stamps = [(e, e.last_tick) for e in entries]
        errors = await dispatch_state.put_ticks(bus, [(e.schedule.id, t) for e, t in stamps])
        kv = None
        for (entry, moment), error in zip(stamps, errors, strict=True):
            if error is not None:
                kv = kv or await bus.kv(subjects.KV_DISPATCH)
                await dispatch_state.put_tick(kv, entry.schedule.id, moment)
            entry.persisted = moment

    async def refresh_idle_ticks(self, bus: Bus, now: datetime) -> None:
        stale = [
            e
            for e in self.entries.values()
            if (e.next_due is None or e.next_due > now)
            and (e.persisted is None or now - e.persisted > TICK_REFRESH)
        ]
        if not stale:
            return
        for e in stale:  # nothing was due in (last_tick, now]: advancing loses nothing
            e.last_tick = max(e.last_tick, now)
        await self.persist_ticks(bus, stale)
