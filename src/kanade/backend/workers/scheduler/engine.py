"""The central scheduler (SPEC §4.4): fires every enabled ``runs_on: backend`` schedule.

One task per backend process runs :meth:`Scheduler.run`: it competes for the lease
(:mod:`.lease`) and, while it holds it, leads:

* **catalog** — all schedules are read from ``kanade_schedules`` on taking the lease and
  every 30 s; in between, a core subscription to the bucket's subjects delivers each edit
  the moment it is stored and wakes the loop (edits apply from the next tick);
* **loop** — sleeps until the earliest next fire (at most 1 s, so it ticks at least once a
  second), then decides every due schedule with :func:`~kanade.core.scheduling.decide_tick`
  from its persisted ``last_tick`` (``tick.<id>`` in ``kanade_dispatch``), which is what
  applies ``catchup`` after downtime;
* **gates** — active, window, skip dates and the fleet freeze (``kanade_freeze``/``fleet``)
  in the core; the job is read at fire time; ``max_concurrent`` caps the job's in-flight
  runs fleet-wide; reconcile shapes pick pcs with the core's dedup and dispatch marks;
* **dispatch** — through the exec service (pin → claim → commands → record → audit) with
  ``initiated_by = "schedule:<id>"`` and the nominal time on the exec row; a tick's
  messages are published pipelined (:func:`~kanade.bus.publish.send_pipelined`).

**Prepared ahead** (SPEC §10.2: fire lateness p99 ≤ 100 ms with 1 000 fires in the same
instant). Deciding, reading jobs and agents, building and encoding commands and claiming
exec rows for a thousand fires takes a few hundred milliseconds; done at the instant, all
of it is lateness. So a calendar/cron occurrence due within :data:`PREPARE_AHEAD` is
prepared before its instant — decided as a tick at exactly its nominal time would decide
it (:func:`~kanade.core.scheduling.decide_ahead`), job read and pinned, commands and exec
record encoded, exec row claimed — and at the instant only its messages are published
(commands first). What was decided early is kept honest like this:

* *schedule edited, disabled or deleted*, *job edited or deleted*, *fleet freeze set or
  cleared* before the instant: the loop watches the three KV buckets (core subscriptions,
  no polling) and withdraws the affected prepared fires at once — the claimed rows and
  their ``fired`` decisions are deleted (:func:`.store.release_executions`; nothing of
  those fires was published) and the occurrence is prepared again, or decided by the
  ordinary tick at the instant, from the new state. A notification still unprocessed at
  the instant withdraws the fire then. After a reconnect notifications may have been
  lost, so every fire prepared before it goes back to the ordinary tick. A change that
  lands while the commands are being published is as late as it was without
  preparation (the job and the freeze were always read before publishing);
* *timing*: at the instant :func:`~kanade.core.scheduling.recheck_at_instant` sends a
  fire back to the ordinary tick when it would go out later than the late tolerance or
  its starting deadline, or inside a freeze that begins between nominal and now;
* *lease lost* before the instant: nothing is published. The claimed rows stay: the
  ticks were not persisted, so whoever leads next re-decides those occurrences, finds
  their rows claimed and publishes them (the repair below) — once, like any occurrence;
* *crash* before the instant: the same repair on restart;
* *not prepared*: reconcile polls (their pcs depend on results and heartbeats up to the
  poll), schedules with ``max_concurrent`` (in-flight runs change up to the instant),
  jobs with ``require_approval`` (unattended approvals too), gated or late occurrences,
  and anything the preparation could not finish before the instant — the ordinary tick
  decides those at the instant, as it always did. Which agents are alive (for the
  expected count) is read up to :data:`PREPARE_AHEAD` early: a heartbeat ages out over
  two minutes, so that reading is as good at the instant.

Visible effects: the exec row of a prepared fire (``created_at`` = its nominal time, the
command's ``issued_at`` too) and its ``fired`` decision exist up to :data:`PREPARE_AHEAD`
before the instant, and disappear again if the fire is withdrawn; a prepared run counts
as in flight for ``max_concurrent`` decisions of the same job at the same instant.

Occurrence identity makes every fire idempotent, in two layers below the lease:

1. **database** — ``exec_id = exec_id_for(occurrence_id(schedule, nominal))``; the row is
   claimed with insert-if-absent *before* anything is published. A row that exists means
   the occurrence was fired (by this process before a restart, by another replica, or
   before a clock step) and it is not published as a new fire;
2. **broker** — the exec record, commands and audit record carry ``Nats-Msg-Id``s derived
   from the same ids (``request_id_for``), so a publish repeated within the streams' 2-min
   duplicate window is dropped by JetStream. This is also what makes the one repair safe:
   an occurrence whose row exists but is younger than :data:`REPUBLISH_WINDOW` is published
   again (a crash between claiming the row and publishing would otherwise lose it) — if
   it had gone out, the broker drops the copy; the agents' admission ledgers are a third
   net. An older row is published again only when its exec record is not in the execs
   stream: the record goes out right behind the commands, so without it nothing was
   published (typically a fire prepared ahead whose leader died before the instant and
   came back late); and a claim like that for an occurrence the tick does *not* fire
   (missed, skipped) is released, so it is not counted as a fire that never happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final

import structlog
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kanade.backend.catalog import pins
from kanade.backend.catalog.jobs import JobCatalog
from kanade.backend.catalog.schedules import decode_schedule
from kanade.backend.messaging.outgoing import audit_message, command_messages, record_message
from kanade.backend.messaging.records import ExecRecord
from kanade.backend.services import approvals, rollouts
from kanade.backend.store import reads
from kanade.backend.store import scheduling as store
from kanade.backend.store.database import Database
from kanade.backend.store.scheduling import DecisionRow
from kanade.backend.workers.scheduler import state
from kanade.backend.workers.scheduler.lease import Lease
from kanade.backend.workers.scheduler.plans import backend_local_zone, plan_for
from kanade.bus.connection import Bus
from kanade.bus.kvsnapshot import kv_snapshot
from kanade.bus.publish import Outgoing, publish_one, send_pipelined, settle
from kanade.core import subjects
from kanade.core.dispatch import Budgets, build_command
from kanade.core.fleet import alive_cutoff
from kanade.core.models.job import JobManifest
from kanade.core.models.schedule import Schedule
from kanade.core.models.target import Target
from kanade.core.models.wire import Command
from kanade.core.scheduling import (
    DEFAULT_LATE_TOLERANCE,
    RECONCILE_POLL,
    AheadFire,
    DispatchMark,
    Fire,
    Freeze,
    Missed,
    Plan,
    Skip,
    decide_ahead,
    decide_tick,
    exec_id_for,
    make_dispatch_mark,
    next_fire,
    occurrence_id,
    per_pc_to_fire,
    per_target_decision,
    recheck_at_instant,
    request_id_for,
)
from kanade.core.targeting import command_subjects, expected_pcs

log = structlog.get_logger(__name__)

MAX_SLEEP_S: Final = 1.0
"""The loop wakes at least this often (SPEC: tick at least once per second)."""
RESYNC_S: Final = 30.0
"""Full re-read of the catalog, in case a change notification was lost (reconnect)."""
TICK_REFRESH: Final = timedelta(hours=6)
"""Idle schedules get their ``last_tick`` advanced and re-persisted this often, so the key
never ages out of the bucket (30-day TTL) and a restart does not rescan months."""
REPUBLISH_WINDOW: Final = timedelta(seconds=60)
"""An occurrence found already claimed but younger than this is published again (safe:
well inside the command stream's 2-min duplicate window, the broker drops a copy)."""
PREPARE_AHEAD: Final = timedelta(seconds=2)
"""Calendar/cron occurrences due within this long are prepared before their instant
(1 000 take ≈ 0.1-0.4 s to prepare on a 2-core machine, so this leaves room)."""
PREPARE_GUARD_S: Final = 0.5
"""No preparation starts this close before an instant already prepared: it could still be
running when that instant comes and hold its publish up."""
RESYNC_GUARD_S: Final = 1.0
"""Likewise for the periodic catalog re-read (it is postponed, at most one more period)."""
_FIRE_CONCURRENCY: Final = 512
_PUBLISH_ATTEMPTS: Final = 3


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


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
class _Planned:
    """One fire ready to publish."""

    entry: Entry
    fire: Fire
    job: JobManifest
    record: ExecRecord
    commands: list[tuple[Command, list[str]]]
    pcs: list[str]
    reconcile: bool
    note: str | None = None
    marks: list[DispatchMark] = field(default_factory=list)
    messages: list[Outgoing] = field(default_factory=list)
    """The encoded commands, one per address subject."""
    record_message: Outgoing | None = None


@dataclass
class _Prepared:
    """A fire prepared ahead of its instant: built, and its exec row claimed."""

    planned: _Planned
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


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.fires = Counter(
            "kanade_schedule_fires",
            "Schedule occurrences decided by the central scheduler, by result",
            ["result"],
            registry=registry,
        )
        for result in ("fired", "skipped", "missed"):
            self.fires.labels(result=result)
        self.lateness = Histogram(
            "kanade_schedule_fire_lateness_seconds",
            "Dispatch time (commands acked by the broker) minus nominal fire time",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
            registry=registry,
        )
        self.leader = Gauge(
            "kanade_scheduler_leader",
            "1 while this backend holds the scheduler lease",
            registry=registry,
        )
        self.schedules = Gauge(
            "kanade_scheduler_schedules",
            "Enabled runs_on: backend schedules the leader is running",
            registry=registry,
        )


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
        lease_key: str = state.LEASE_KEY,
        late_tolerance: timedelta = DEFAULT_LATE_TOLERANCE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        local_tz: tzinfo | None = None,
        holder: str | None = None,
        prepare_ahead: timedelta = PREPARE_AHEAD,
    ) -> None:
        self._db = db
        self._bus = bus
        self._budgets = budgets
        self.metrics = SchedulerMetrics(registry)
        self.reconcile_poll = reconcile_poll
        self._clock = clock
        self.local_tz = local_tz or backend_local_zone()
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = Lease(self._dispatch_kv, self.holder, ttl_s=lease_ttl_s, key=lease_key)
        self.late_tolerance = late_tolerance
        self.prepare_ahead = prepare_ahead
        """How long before its instant a fire is prepared (0 = never: every fire is
        decided, built and claimed at its instant)."""
        self.entries: dict[str, Entry] = {}
        self.marks: dict[str, dict[str, DispatchMark]] = {}
        self._changes: dict[str, bytes | None] = {}
        self._job_changes: set[str] = set()
        self._freeze_changed = False
        self._prepared: dict[str, _Prepared] = {}
        self._no_prep: dict[str, datetime] = {}
        """schedule id → the nominal time found not preparable (decided at the instant)."""
        self._generations = itertools.count(1)
        self._wake = asyncio.Event()
        self._leader_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.ticks = 0

    # --- public --------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self._leader_task is not None and not self._leader_task.done() and self.lease.held

    def status(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "leader": self.is_leader,
            "other_holder": self.lease.other_holder,
            "schedules": len(self.entries) if self.is_leader else None,
            "reconcile_poll_s": self.reconcile_poll.total_seconds(),
            "local_tz": str(getattr(self.local_tz, "key", self.local_tz)),
            "prepare_ahead_s": self.prepare_ahead.total_seconds(),
        }

    def prepared(self) -> dict[str, datetime]:
        """schedule id → nominal time of every fire prepared and waiting for its instant."""
        return {sid: p.nominal for sid, p in self._prepared.items()}

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Compete for the lease forever; lead while holding it."""
        while not self._stopping:
            try:
                if self.lease.held or self._leader_task is not None:
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
            if ok and self._leader_task is None:
                self._leader_task = asyncio.create_task(self._lead(), name="scheduler-leader")
            elif self._leader_task is not None and (
                not self.lease.held or self._leader_task.done()
            ):
                await self._step_down()
            self.metrics.leader.set(1 if self.is_leader else 0)
            # Not connected yet: retry soon, so a fresh backend leads as soon as it can.
            pause = self.lease.renew_interval_s
            await asyncio.sleep(min(pause, 0.5) if failed and not ok else pause)

    async def stop(self) -> None:
        self._stopping = True
        await self._step_down()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.lease.release(), 5.0)
        self.metrics.leader.set(0)

    # --- leading -------------------------------------------------------------------------
    async def _step_down(self) -> None:
        task, self._leader_task = self._leader_task, None
        if task is None:
            return
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        elif not task.cancelled() and task.exception() is not None:
            log.warning("scheduler loop ended with an error", error=str(task.exception()))
        # Prepared fires are dropped unpublished with their rows claimed: their ticks were
        # not persisted, so the next leader (maybe us again) re-decides those occurrences,
        # finds the rows young and publishes them.
        self.entries.clear()
        self.marks.clear()
        self._prepared.clear()
        self._no_prep.clear()
        self._job_changes.clear()
        self._freeze_changed = False
        self.metrics.schedules.set(0)
        log.info("scheduler stepped down", holder=self.holder)

    async def _dispatch_kv(self) -> Any:
        return await self._bus().kv(subjects.KV_DISPATCH)

    async def _lead(self) -> None:
        bus = self._bus()
        log.info("scheduler leading", holder=self.holder, local_tz=str(self.local_tz))
        prefix = f"$KV.{subjects.KV_SCHEDULES}."
        jobs_prefix = f"$KV.{subjects.KV_JOBS}."

        async def on_change(msg: Msg) -> None:
            op = (msg.headers or {}).get("KV-Operation")
            self._changes[msg.subject[len(prefix) :]] = (
                None if op in ("DEL", "PURGE") else bytes(msg.data)
            )
            self._wake.set()

        # Jobs and the freeze are read when a fire is decided; these notifications tell
        # when a fire prepared ahead was decided on what is no longer true.
        async def on_job(msg: Msg) -> None:
            self._job_changes.add(msg.subject[len(jobs_prefix) :])
            self._wake.set()

        async def on_freeze(msg: Msg) -> None:
            self._freeze_changed = True
            self._wake.set()

        subs = [
            await bus.nc.subscribe(prefix + ">", cb=on_change),
            await bus.nc.subscribe(jobs_prefix + ">", cb=on_job),
            await bus.nc.subscribe(f"$KV.{subjects.KV_FREEZE}.>", cb=on_freeze),
        ]
        try:
            await self._resync(bus)
            last_resync = time.monotonic()
            while True:
                if not self.lease.held:
                    return  # the lease loop steps us down
                # Fires whose instant has come go out before anything else is looked at.
                await self._fire_prepared(bus)
                since = time.monotonic() - last_resync
                if since > RESYNC_S and (
                    not self._instant_within(RESYNC_GUARD_S) or since > 2 * RESYNC_S
                ):
                    await self._resync(bus)
                    last_resync = time.monotonic()
                if self._changes or self._job_changes or self._freeze_changed:
                    await self._apply_changes(bus)
                now = self._clock()
                due = [
                    e
                    for e in self.entries.values()
                    if e.next_due is not None
                    and e.next_due <= now
                    and e.schedule.id not in self._prepared
                ]
                if due:
                    await self._tick(bus, due, now)
                await self._prepare(bus)
                await self._refresh_idle_ticks(bus, self._clock())
                await self._sleep()
        finally:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    def _instant_within(self, seconds: float) -> bool:
        """A prepared instant is due within ``seconds``."""
        if not self._prepared:
            return False
        soonest = min(p.nominal for p in self._prepared.values())
        return (soonest - self._clock()).total_seconds() < seconds

    def _may_prepare(self, entry: Entry) -> bool:
        if self.prepare_ahead <= timedelta(0) or entry.next_due is None:
            return False
        if entry.plan.is_reconcile or self._no_prep.get(entry.schedule.id) == entry.next_due:
            return False
        constraints = entry.schedule.constraints
        return constraints is None or not constraints.max_concurrent

    async def _sleep(self) -> None:
        now = self._clock()
        timeout = MAX_SLEEP_S
        # While a prepared instant is close, preparing waits for it (see _prepare): wake
        # for the instant, not for preparations that cannot start yet.
        guarded = self._instant_within(PREPARE_GUARD_S)
        upcoming: list[datetime] = []
        for e in self.entries.values():
            if e.next_due is None:
                continue
            prepared = self._prepared.get(e.schedule.id)
            if prepared is not None:
                upcoming.append(prepared.nominal)
            elif not guarded and self._may_prepare(e):
                upcoming.append(e.next_due - self.prepare_ahead)
            else:
                upcoming.append(e.next_due)
        if upcoming:
            timeout = min(timeout, max(0.0, (min(upcoming) - now).total_seconds()))
        if timeout <= 0:
            await asyncio.sleep(0)
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    # --- catalog -------------------------------------------------------------------------
    def _wanted(self, schedule: Schedule) -> bool:
        return schedule.enabled and schedule.runs_on == "backend"

    async def _resync(self, bus: Bus) -> None:
        self._changes.clear()
        snapshot = await kv_snapshot(bus.js, subjects.KV_SCHEDULES)
        ticks = await state.load_ticks(bus)
        if not self.marks:
            self.marks = await state.load_marks(bus)
        now = self._clock()
        seen: set[str] = set()
        for key, (raw, _rev) in snapshot.items():
            try:
                schedule = decode_schedule(raw)
            except ValueError as exc:
                log.warning("unreadable schedule skipped", schedule_id=key, error=str(exc))
                continue
            if not self._wanted(schedule):
                continue
            seen.add(schedule.id)
            self._upsert(schedule, ticks.get(schedule.id), now)
        for sid in set(self.entries) - seen:
            del self.entries[sid]
        self.metrics.schedules.set(len(self.entries))
        # A change notification lost (reconnect) shows here as a new generation or a
        # missing entry: what was prepared from the old definition is withdrawn.
        await self._withdraw_stale(set(), freeze_changed=False)
        await self._persist_new(bus)

    async def _apply_changes(self, bus: Bus) -> None:
        # Taken (and cleared) before any await: what is notified meanwhile is kept for the
        # next round, so a fire prepared in between is checked against it too.
        changes, self._changes = self._changes, {}
        jobs, self._job_changes = self._job_changes, set()
        freeze_changed, self._freeze_changed = self._freeze_changed, False
        if changes:
            dispatch = await bus.kv(subjects.KV_DISPATCH)
            now = self._clock()
            for sid, raw in changes.items():
                schedule: Schedule | None = None
                if raw is not None:
                    try:
                        schedule = decode_schedule(raw)
                    except ValueError as exc:
                        log.warning("unreadable schedule skipped", schedule_id=sid, error=str(exc))
                if schedule is None or not self._wanted(schedule):
                    if self.entries.pop(sid, None) is not None:
                        log.info("schedule unregistered", schedule_id=sid)
                    continue
                self._upsert(schedule, await state.get_tick(dispatch, sid), now)
            self.metrics.schedules.set(len(self.entries))
        # Whatever kept an occurrence from being prepared (a gate, the job, the freeze)
        # may be different now: look at every one again.
        self._no_prep.clear()
        await self._withdraw_stale(jobs, freeze_changed=freeze_changed)
        if changes:
            await self._persist_new(bus)

    def _upsert(self, schedule: Schedule, stored_tick: datetime | None, now: datetime) -> None:
        """(Re-)register a schedule. ``last_tick`` = the newer of what we hold and what is
        stored (the API resets it to "now" when a schedule is created or re-enabled, so
        nothing from before that is fired); a schedule never ticked starts now."""
        plan = plan_for(schedule, self.reconcile_poll)
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
            next_fire(plan, last_tick, self.local_tz),
            persisted,
            generation,
        )
        if old is None:
            log.info(
                "schedule registered",
                schedule_id=schedule.id,
                shape=schedule.when.shape,
                last_tick=_iso(last_tick),
                next_due=None if entry.next_due is None else _iso(entry.next_due),
            )
        self.entries[schedule.id] = entry

    async def _persist_new(self, bus: Bus) -> None:
        fresh = [e for e in self.entries.values() if e.persisted is None]
        if fresh:
            await self._persist_ticks(bus, fresh)

    async def _persist_ticks(self, bus: Bus, entries: list[Entry]) -> None:
        """Store the entries' ``last_tick``s, pipelined; one that fails is retried alone
        (and raises if that fails too, as a KV put would)."""
        if not entries:
            return
        stamps = [(e, e.last_tick) for e in entries]
        errors = await state.put_ticks(bus, [(e.schedule.id, t) for e, t in stamps])
        kv = None
        for (entry, moment), error in zip(stamps, errors, strict=True):
            if error is not None:
                kv = kv or await bus.kv(subjects.KV_DISPATCH)
                await state.put_tick(kv, entry.schedule.id, moment)
            entry.persisted = moment

    async def _refresh_idle_ticks(self, bus: Bus, now: datetime) -> None:
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
        await self._persist_ticks(bus, stale)

    # --- fires prepared ahead --------------------------------------------------------------
    async def _prepare(self, bus: Bus) -> None:
        """Prepare every calendar/cron occurrence due within :attr:`prepare_ahead`: decide it
        as of its nominal time, build it, claim its exec row. Nothing is published."""
        if self.prepare_ahead <= timedelta(0) or self._instant_within(PREPARE_GUARD_S):
            return
        now = self._clock()
        horizon = now + self.prepare_ahead
        candidates = [
            e
            for e in self.entries.values()
            if e.next_due is not None
            and now < e.next_due <= horizon
            and e.schedule.id not in self._prepared
            and self._may_prepare(e)
        ]
        if not candidates:
            return
        t0 = time.perf_counter()
        # Snapshots the fires are decided with. A freeze, job or schedule change notified
        # from now on is processed after this preparation and withdraws what it affects;
        # a reconnect (notifications possibly lost) sends them to the ordinary tick.
        reconnects = _reconnects(bus)
        freeze = await state.read_freeze(bus)
        fires: list[tuple[Entry, AheadFire]] = []
        for entry in candidates:
            assert entry.next_due is not None
            ahead = decide_ahead(
                entry.plan,
                last_tick=entry.last_tick,
                nominal=entry.next_due,
                local_tz=self.local_tz,
                freeze=freeze,
                late_tolerance=self.late_tolerance,
            )
            if ahead is None:  # gated, skipped or missed: the tick at the instant decides
                self._no_prep[entry.schedule.id] = entry.next_due
            else:
                fires.append((entry, ahead))
        if not fires:
            return
        by_sid = {e.schedule.id: a for e, a in fires}
        deferred: list[Entry] = []
        planned = await self._plan(bus, [(e, a.fire) for e, a in fires], now, [], deferred=deferred)
        for entry in deferred:
            self._no_prep[entry.schedule.id] = by_sid[entry.schedule.id].fire.nominal
        if not planned:
            return
        t1 = time.perf_counter()
        by_exec = {p.record.exec_id: p for p in planned}

        def claim(conn: Any) -> tuple[set[str], set[str]]:
            """Claim the rows and record the decisions, as a tick at the instant would (one
            transaction): the ``fired`` decision stands with the claim, so whoever finds
            the row later — after a crash, another replica — records a duplicate, and
            the occurrence is counted once. A withdrawal takes both back."""
            claimed = store.claim_executions(conn, [p.record.row() for p in planned], now)
            existing = store.existing_executions(conn, set(by_exec) - claimed)
            young: set[str] = set()
            rows: list[DecisionRow] = []
            for exec_id, p in by_exec.items():
                if exec_id in claimed:
                    rows.append(self._fired_row(p, claimed=True, decided_at=p.fire.nominal))
                    continue
                created = existing.get(exec_id, {}).get("created_at")
                if isinstance(created, datetime) and now - created <= REPUBLISH_WINDOW:
                    young.add(exec_id)
                    rows.append(self._fired_row(p, claimed=False, decided_at=p.fire.nominal))
            store.record_decisions(conn, rows, now)
            return claimed, young

        claimed, young = await self._db.write(claim)
        for exec_id, p in by_exec.items():
            sid = p.entry.schedule.id
            if exec_id not in claimed and exec_id not in young:
                # Claimed long ago (fired before a clock step, or claimed by a leader that
                # died before publishing): the tick at the instant sorts it out.
                self._no_prep[sid] = p.fire.nominal
                continue
            self._prepared[sid] = _Prepared(
                p, by_sid[sid], p.entry.generation, exec_id in young, freeze, reconnects
            )
        log.debug(
            "scheduled fires prepared",
            fires=len(planned),
            claimed=len(claimed),
            first_nominal=_iso(min(p.fire.nominal for p in planned)),
            plan_ms=round((t1 - t0) * 1000, 1),
            claim_ms=round((time.perf_counter() - t1) * 1000, 1),
        )

    def _stale_reason(self, p: _Prepared, now: datetime, reconnects: int) -> str | None:
        """Why a prepared fire must not go out as prepared now; None when it may. Cheap
        (no I/O): it runs at the instant, in front of the publish."""
        entry = self.entries.get(p.schedule_id)
        if entry is None or entry.generation != p.generation or p.schedule_id in self._changes:
            return "the schedule changed"
        if p.job_id in self._job_changes:
            return f"job {p.job_id!r} changed"
        if self._freeze_changed:
            return "the fleet freeze changed"
        if reconnects != p.reconnects:
            return "the broker connection was re-established (a change may have gone unseen)"
        return recheck_at_instant(
            entry.plan, p.ahead.fire, now=now, freeze=p.freeze, late_tolerance=self.late_tolerance
        )

    async def _withdraw_stale(self, jobs: set[str], *, freeze_changed: bool) -> None:
        """Withdraw prepared fires decided on what changed (before their instant)."""
        stale: list[tuple[_Prepared, str]] = []
        for p in self._prepared.values():
            entry = self.entries.get(p.schedule_id)
            if entry is None or entry.generation != p.generation:
                stale.append((p, "the schedule changed"))
            elif p.job_id in jobs:
                stale.append((p, f"job {p.job_id!r} changed"))
            elif freeze_changed:
                stale.append((p, "the fleet freeze changed"))
        if stale:
            await self._withdraw(stale)

    async def _withdraw(self, items: list[tuple[_Prepared, str]]) -> None:
        """Forget prepared fires and delete the exec rows they claimed, so the occurrence
        is decided afresh (prepared again, or by the ordinary tick at its instant)."""
        for p, why in items:
            if self._prepared.get(p.schedule_id) is p:
                del self._prepared[p.schedule_id]
            self._no_prep.pop(p.schedule_id, None)
            log.info(
                "prepared fire withdrawn",
                schedule_id=p.schedule_id,
                nominal=_iso(p.nominal),
                reason=why,
            )
        # A row found claimed (republish) belongs to an earlier fire of the occurrence
        # (a previous run, another replica) and may have gone out: never ours to delete.
        ours = [p.planned.record.exec_id for p, _ in items if not p.republish]
        if not ours:
            return
        now = self._clock()
        try:
            await self._db.write(lambda conn: store.release_executions(conn, ours, now))
        except Exception as exc:
            # The rows stay claimed; the ordinary tick then finds them claimed and never
            # published: it publishes the occurrence as re-decided, or releases the claim
            # if it does not fire it. Only a schedule disabled or deleted meanwhile (no
            # tick decides it again) leaves a row behind, pending until the reaper
            # expires it — never a wrong fire.
            log.error("claims of withdrawn fires not released", error=str(exc), execs=ours)

    async def _fire_prepared(self, bus: Bus) -> None:
        """Publish the prepared fires whose instant has come."""
        if not self._prepared:
            return
        now = self._clock()
        ready = [p for p in self._prepared.values() if p.nominal <= now]
        if not ready:
            return
        for p in ready:
            del self._prepared[p.schedule_id]
        if not self.lease.held:
            # Nothing goes out. The claimed rows stay: whoever leads next re-decides these
            # occurrences (their ticks were not persisted), finds the rows claimed and
            # never published, and publishes them (see _claim).
            log.warning("lease lost before prepared fires were due", fires=len(ready))
            return
        self.ticks += 1
        reconnects = _reconnects(bus)
        go: list[_Prepared] = []
        back: list[tuple[_Prepared, str]] = []
        for p in ready:
            why = self._stale_reason(p, now, reconnects)
            if why is None:
                go.append(p)
            else:
                back.append((p, why))
        t0 = time.perf_counter()
        lateness = await self._publish(bus, [p.planned for p in go])
        t1 = time.perf_counter()
        if back:
            # Still due: the ordinary tick right after this decides them at the instant.
            await self._withdraw(back)
        if not go:
            return
        persist: list[Entry] = []
        for p in go:
            # _stale_reason found it current; entries change only in the loop body, i.e.
            # not while this runs.
            entry = self.entries[p.schedule_id]
            entry.last_tick = max(entry.last_tick, p.ahead.last_tick)
            entry.next_due = p.ahead.next_fire
            persist.append(entry)
        await self._persist_ticks(bus, persist)
        self.metrics.fires.labels(result="fired").inc(sum(1 for p in go if not p.republish))
        await self._prune()
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

    # --- one tick --------------------------------------------------------------------------
    async def _tick(self, bus: Bus, due: list[Entry], now: datetime) -> None:
        self.ticks += 1
        t_start = time.perf_counter()
        freeze = await state.read_freeze(bus)
        rows: list[DecisionRow] = []
        fires: list[tuple[Entry, Fire]] = []
        # The first occurrence due of each calendar/cron schedule: the one a previous
        # leader may have prepared (claimed) and then not published (crash, lost lease).
        firsts = {
            e.schedule.id: e.next_due
            for e in due
            if e.next_due is not None and not e.plan.is_reconcile
        }
        for entry in due:
            outcome = decide_tick(
                entry.plan,
                last_tick=entry.last_tick,
                now=now,
                local_tz=self.local_tz,
                freeze=freeze,
                late_tolerance=self.late_tolerance,
            )
            entry.last_tick = outcome.last_tick
            entry.next_due = outcome.next_fire
            for decision in outcome.decisions:
                if isinstance(decision, Fire):
                    fires.append((entry, decision))
                elif isinstance(decision, Skip):
                    if decision.quiet:
                        log.debug(
                            "poll held",
                            schedule_id=decision.schedule_id,
                            reason=decision.reason,
                            detail=decision.detail,
                        )
                        continue
                    code = decision.exit_code
                    rows.append(
                        DecisionRow(
                            decision.schedule_id,
                            decision.occurrence_id,
                            decision.nominal,
                            "skipped",
                            decision.reason,
                            decision.detail if code is None else f"{decision.detail} (exit {code})",
                        )
                    )
                    log.info(
                        "fire skipped",
                        schedule_id=decision.schedule_id,
                        nominal=_iso(decision.nominal),
                        reason=decision.reason,
                        detail=decision.detail,
                    )
                elif isinstance(decision, Missed):
                    rows.append(_missed_row(decision, entry))
                    log.warning(
                        "fires missed",
                        schedule_id=decision.schedule_id,
                        count=len(decision.nominals),
                        first=_iso(decision.nominals[0]),
                        last=_iso(decision.nominals[-1]),
                    )
        t0 = time.perf_counter()
        planned = await self._plan(bus, fires, now, rows) if fires else []
        t1 = time.perf_counter()
        # Missed, skipped, or skipped while planned (job gone, max_concurrent): not fired.
        not_fired = {
            exec_id_for(occurrence_id(sid, nominal)) for sid, nominal in firsts.items()
        } - {p.record.exec_id for p in planned}
        claimed, republish = await self._claim(bus, planned, rows, now, not_fired)
        t2 = time.perf_counter()
        await self._publish(bus, [p for p in planned if p.record.exec_id in claimed | republish])
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
        await self._persist_ticks(bus, due)
        for row in rows:
            if row.result in ("fired", "skipped", "missed"):
                self.metrics.fires.labels(result=row.result).inc(row.count)
        await self._prune()

    async def _prune(self) -> None:
        if self.ticks % 500 == 0:
            await self._db.write(store.prune_decisions)

    async def _plan(
        self,
        bus: Bus,
        fires: list[tuple[Entry, Fire]],
        now: datetime,
        rows: list[DecisionRow],
        *,
        deferred: list[Entry] | None = None,
    ) -> list[_Planned]:
        """Build the fires (job read at fire time, pinned; expected pcs; commands).

        With ``deferred`` (a list to fill) the fires are being prepared ahead: one whose
        job is missing or requires approval, or whose schedule caps concurrent runs, is
        not built but put in ``deferred`` — its skip reason or its approval and in-flight
        facts are for the tick at the instant to establish — and the rest are stamped
        with their nominal time (issued_at, created_at) instead of ``now``.
        """
        catalog = JobCatalog(bus)
        job_ids = sorted({e.schedule.job_id for e, _ in fires})
        jobs = dict(
            zip(job_ids, await asyncio.gather(*(catalog.get(j) for j in job_ids)), strict=True)
        )
        if deferred is not None:
            kept: list[tuple[Entry, Fire]] = []
            for entry, fire in fires:
                job = jobs.get(entry.schedule.job_id)
                constraints = entry.schedule.constraints
                capped = constraints is not None and bool(constraints.max_concurrent)
                if job is None or job.require_approval or capped:
                    deferred.append(entry)
                else:
                    kept.append((entry, fire))
            fires = kept
            if not fires:
                return []
        # require_approval jobs fire only at a version approved for unattended runs (§4.8).
        needs_approval = [
            (j.id, j.version) for j in jobs.values() if j is not None and j.require_approval
        ]
        unattended = (
            await approvals.unattended_approved(self._db, needs_approval)
            if needs_approval and deferred is None
            else set()
        )
        digests: dict[str, str | None] = {}
        firing_jobs = {e.schedule.job_id for e, _ in fires}
        for job_id, job in jobs.items():
            if job_id not in firing_jobs:
                continue  # deferred: pinned by the tick that fires it
            if job is not None and (not job.require_approval or job_id in unattended):
                digests[job_id] = await pins.pin(bus, job)

        reconcile_ids = [e.schedule.id for e, _ in fires if e.plan.is_reconcile]
        capped_jobs = [
            e.schedule.job_id
            for e, _ in fires
            if e.schedule.constraints is not None and e.schedule.constraints.max_concurrent
        ]

        def facts(conn: Any) -> tuple[Any, Any, Any]:
            alive = reads.alive_agents(conn, alive_cutoff(now))
            return (
                alive,
                store.reconcile_facts(conn, reconcile_ids) if reconcile_ids else {},
                store.in_flight_by_job(conn, capped_jobs) if capped_jobs else {},
            )

        alive, reconcile, in_flight = await self._db.read(facts)
        alive_ids = {pc for pc, _ in alive}
        out: list[_Planned] = []
        for entry, fire in fires:
            schedule = entry.schedule
            job = jobs.get(schedule.job_id)

            def skip(reason: str, detail: str, *, entry: Entry = entry, fire: Fire = fire) -> None:
                rows.append(
                    DecisionRow(
                        entry.schedule.id,
                        fire.occurrence_id,
                        fire.nominal,
                        "skipped",
                        reason,
                        detail,
                    )
                )
                log.info(
                    "fire skipped",
                    schedule_id=entry.schedule.id,
                    nominal=_iso(fire.nominal),
                    reason=reason,
                    detail=detail,
                )

            if job is None:
                skip("job_missing", f"job {schedule.job_id!r} is not in the catalog")
                continue
            if job.require_approval and job.id not in unattended:
                skip(
                    "requires_approval",
                    f"job {job.id!r} requires approval and version {job.version!r} is not "
                    f"approved for unattended runs (kanade job approve-unattended {job.id} "
                    f"{job.version})",
                )
                continue
            target = schedule.target
            mode = entry.plan.dedup
            if mode is None:
                pcs = expected_pcs(target, alive)
            else:
                f = reconcile.get(schedule.id) or store.ReconcileFacts({}, {})
                members = sorted({pc for pc, groups in alive if target.matches(pc, groups)})
                self._expire_marks(schedule.id, now)
                marks = self.marks.get(schedule.id, {})
                if mode.scope == "per_pc":
                    pcs = per_pc_to_fire(
                        mode,
                        members,
                        now=now,
                        alive=alive_ids,
                        last_success=f.last_success,
                        marks=marks,
                        last_results=f.last_result,
                    )
                else:
                    members = sorted(set(members) | set(target.pcs))
                    pcs = list(
                        per_target_decision(
                            mode,
                            members,
                            now=now,
                            alive=alive_ids,
                            last_success=f.last_success,
                            marks=marks,
                            last_results=f.last_result,
                        ).fire_pcs
                    )
                if not pcs:
                    continue  # nobody to run it at this poll: not a fire, not a skip
            note = None
            limit = None if schedule.constraints is None else schedule.constraints.max_concurrent
            if limit:
                room = limit - in_flight.get(job.id, 0)
                if room <= 0:
                    skip(
                        "max_concurrent",
                        f"{in_flight.get(job.id, 0)} run(s) of job {job.id!r} in flight "
                        f"(max_concurrent {limit})",
                    )
                    continue
                if len(pcs) > room:
                    note = f"capped to {room} of {len(pcs)} pc(s) by max_concurrent {limit}"
                    pcs = sorted(pcs)[:room]
                    if mode is None:
                        target = Target(pcs=pcs)
                in_flight[job.id] = in_flight.get(job.id, 0) + len(pcs)
            stamp = now if deferred is None else fire.nominal
            out.append(self._build(entry, fire, job, digests.get(job.id), target, pcs, stamp, note))
        return out

    def _build(
        self,
        entry: Entry,
        fire: Fire,
        job: JobManifest,
        script_sha256: str | None,
        target: Target,
        pcs: list[str],
        stamp: datetime,
        note: str | None,
    ) -> _Planned:
        """``stamp`` is the fire's moment: issued_at, created_at, the marks' dispatched_at
        (the tick's now; the nominal time for a fire prepared ahead)."""
        schedule = entry.schedule
        plan = entry.plan
        occurrence = fire.occurrence_id
        exec_id = exec_id_for(occurrence)
        reconcile = plan.is_reconcile

        def command(request_id: str, address: Target) -> Command:
            return build_command(
                job,
                exec_id=exec_id,
                request_id=request_id,
                address=address,
                issued_at=stamp,
                deadline_at=fire.deadline_at,
                jitter_s=plan.jitter.total_seconds(),
                schedule_id=schedule.id,
                nominal_time=fire.nominal,
                max_timeout_s=self._budgets.max_timeout_s,
                max_output_bytes=self._budgets.max_output_bytes,
                script_sha256=script_sha256,
                retry=schedule.retry,
            )

        commands: list[tuple[Command, list[str]]]
        marks: list[DispatchMark] = []
        if reconcile:
            # One command per pc (its own request id), so each pc is addressed and
            # deduplicated on its own and a dispatch mark can follow it.
            commands = [
                (
                    command(request_id_for(occurrence, pc), Target(pcs=[pc])),
                    [subjects.command_subject("pc", pc, job.id)],
                )
                for pc in pcs
            ]
            timeout = timedelta(seconds=commands[0][0].timeout_s) if commands else timedelta(0)
            marks = [
                make_dispatch_mark(
                    plan, pc, dispatched_at=stamp, timeout=timeout, occurrence_id=occurrence
                )
                for pc in pcs
            ]
            recorded_target = Target(pcs=pcs)
        else:
            whole = command(request_id_for(occurrence), target)
            commands = [(whole, command_subjects(target, job.id))]
            recorded_target = target
        first = commands[0][0] if commands else None
        record = ExecRecord(
            exec_id=exec_id,
            kind="job",
            job_id=job.id,
            version=job.version,
            target=recorded_target.model_dump(mode="json", include={"all", "groups", "pcs"}),
            expected_pcs=pcs,
            expected_count=len(pcs),
            status="pending",
            initiated_by=f"schedule:{schedule.id}",
            schedule_id=schedule.id,
            nominal_time=fire.nominal,
            created_at=stamp,
            request_id=request_id_for(occurrence),
            inventory_hint=None
            if first is None or first.inventory is None
            else first.inventory.model_dump(mode="json"),
            check_hint=None
            if first is None or first.check is None
            else first.check.model_dump(mode="json"),
        )
        # Encoded here, so that publishing is all that is left at the instant.
        messages = [m for c, subs in commands for m in command_messages(c, subs)]
        return _Planned(
            entry,
            fire,
            job,
            record,
            commands,
            pcs,
            reconcile,
            note,
            marks,
            messages,
            record_message(record),
        )

    def _fired_row(
        self,
        p: _Planned,
        *,
        claimed: bool,
        young: bool = True,
        unpublished: bool = False,
        decided_at: datetime | None = None,
    ) -> DecisionRow:
        """The decision row of a built fire: ``fired`` when this process claimed its row,
        else ``duplicate`` (re-published when ``young`` or ``unpublished``)."""
        fire = p.fire
        exec_id = p.record.exec_id
        if claimed:
            detail = f"dispatched to {len(p.pcs)} pc(s)"
            if fire.caught_up:
                detail += " (catch-up: ran once on recovery)"
            if p.note:
                detail += f"; {p.note}"
            return DecisionRow(
                p.entry.schedule.id,
                fire.occurrence_id,
                fire.nominal,
                "fired",
                "caught_up" if fire.caught_up else None,
                detail,
                exec_id=exec_id,
                pcs=len(p.pcs),
                lateness_s=fire.late.total_seconds(),
                decided_at=decided_at,
            )
        if unpublished:
            detail = (
                "the exec row of this occurrence exists but its messages were never "
                "published (claimed ahead of a crash or a lost lease): published now"
            )
        else:
            detail = (
                "the exec row of this occurrence exists: fired before (restart, "
                "another backend or a clock step)"
                + ("; re-published for the broker to deduplicate" if young else "")
            )
        return DecisionRow(
            p.entry.schedule.id,
            fire.occurrence_id,
            fire.nominal,
            "duplicate",
            "already_fired",
            detail,
            exec_id=exec_id,
            decided_at=decided_at,
        )

    async def _claim(
        self,
        bus: Bus,
        planned: list[_Planned],
        rows: list[DecisionRow],
        now: datetime,
        not_fired: set[str],
    ) -> tuple[set[str], set[str]]:
        """One transaction: claim the exec rows, log every decision, bump the counters.
        Returns (claimed, to re-publish) exec ids.

        A row that exists already is re-published when it is young (the broker drops
        the copy if it had gone out) or when its exec record is not in the execs stream:
        the record goes out right behind the commands, so without it the claim was
        never followed by a publish — a fire prepared ahead whose process crashed or
        lost the lease before the instant, found again after ``REPUBLISH_WINDOW``.
        ``not_fired`` are exec ids of occurrences this tick decided not to fire (missed,
        skipped): a row claimed ahead for one of them and never published is released,
        so the occurrence is recorded as what it is, not as a fire.
        """
        by_exec = {p.record.exec_id: p for p in planned}
        ids = set(by_exec) | not_fired
        before = (
            await self._db.read(lambda conn: store.existing_executions(conn, ids)) if ids else {}
        )

        def young(row: dict[str, Any] | None) -> bool:
            created = row.get("created_at") if row else None
            return isinstance(created, datetime) and now - created <= REPUBLISH_WINDOW

        suspect = [i for i, row in before.items() if i in not_fired or not young(row)]
        unpublished = await self._unpublished(bus, suspect) if suspect else set()
        release = not_fired & unpublished
        result: dict[str, set[str]] = {"claimed": set(), "republish": set()}

        def work(conn: Any) -> None:
            if release:
                store.release_executions(conn, release, now)
            claimed = store.claim_executions(conn, [p.record.row() for p in planned], now)
            existing = store.existing_executions(conn, set(by_exec) - claimed)
            republish: set[str] = set()
            for exec_id, p in by_exec.items():
                if exec_id in claimed:
                    rows.append(self._fired_row(p, claimed=True))
                    continue
                never = exec_id in unpublished
                again = young(existing.get(exec_id)) or never
                if again:
                    republish.add(exec_id)
                rows.append(self._fired_row(p, claimed=False, young=again, unpublished=never))
            store.record_decisions(conn, rows, now)
            result["claimed"], result["republish"] = claimed, republish

        if planned or rows or release:
            await self._db.write(work)
        for exec_id in release:
            log.warning("claim of an occurrence never published released", exec_id=exec_id)
        for exec_id in result["republish"]:
            log.warning(
                "occurrence already claimed; re-publishing for broker dedup", exec_id=exec_id
            )
        return result["claimed"], result["republish"]

    async def _unpublished(self, bus: Bus, exec_ids: list[str]) -> set[str]:
        """The execs among ``exec_ids`` whose record is not in the execs stream (kept a
        year): their messages were never published."""

        async def absent(exec_id: str) -> bool:
            try:
                await bus.js.get_last_msg(
                    subjects.STREAM_EXECS, subjects.exec_subject("created", exec_id)
                )
            except NotFoundError:
                return True
            return False

        ids = sorted(set(exec_ids))
        found = await _gather_bounded([absent(i) for i in ids], limit=64)
        return {i for i, gone in zip(ids, found, strict=True) if gone}

    async def _publish(self, bus: Bus, planned: list[_Planned]) -> list[float | None]:
        """Marks, then every command, then every exec record, then every audit; per fire
        the dispatch lateness in seconds (commands acked by the broker), None when its
        commands could not be published.

        The exec service publishes an exec's record before its commands so that no result
        can reach a database that never heard of the exec; here the row is already in the
        database (claimed before anything is published), so the commands — what lateness
        is about — go first, and the projector's work on the records does not compete
        with them. A crash between commands and record is repaired like any crash after
        the claim: the restarted scheduler re-decides the occurrence (its tick was not
        persisted yet) and re-publishes all of it within :data:`REPUBLISH_WINDOW`; the
        broker drops what had gone out already.

        Commands and records are sent pipelined (:func:`send_pipelined`: every message
        handed to the client at once, acks collected after), the records right behind
        the commands on the same connection; what fails is retried one by one.
        """
        if not planned:
            return []
        t_start = time.perf_counter()

        async def marks(p: _Planned) -> None:
            # Marks first: a crash before the commands leaves the pcs blocked until the
            # mark ends (then they fire again), never fired twice.
            for mark in p.marks:
                self.marks.setdefault(p.entry.schedule.id, {})[mark.pc_id] = mark
                await kv.put(
                    state.mark_key(p.entry.schedule.id, mark.pc_id), state.encode_mark(mark)
                )

        if any(p.marks for p in planned):
            kv = await bus.kv(subjects.KV_DISPATCH)
            await _gather_bounded([marks(p) for p in planned if p.marks])

        def rolled_out(p: _Planned) -> bool:
            # Sent in waves by the rollout runner (kanade.backend.services.rollouts), not now.
            return p.entry.schedule.rollout is not None and not p.reconcile and bool(p.commands)

        direct = [i for i, p in enumerate(planned) if not rolled_out(p)]
        outgoing = [(i, m) for i in direct for m in planned[i].messages]
        commands_pending = await send_pipelined(bus, [m for _, m in outgoing])
        records_pending = await send_pipelined(
            bus, [p.record_message for p in planned if p.record_message is not None]
        )
        t_sent = time.perf_counter()

        failed: dict[int, list[Outgoing]] = {}
        for (i, msg), error in zip(outgoing, await settle(commands_pending), strict=True):
            if error is not None:
                failed.setdefault(i, []).append(msg)
        acked = self._clock()
        sent_at: list[datetime | None] = [None] * len(planned)
        for i in direct:
            if i not in failed:
                sent_at[i] = acked
        for i, msgs in failed.items():
            step = functools.partial(_publish_each, bus, msgs)
            if await _retried(planned[i], "commands", step, attempts=_PUBLISH_ATTEMPTS - 1):
                sent_at[i] = self._clock()
        for i, p in enumerate(planned):
            rollout = p.entry.schedule.rollout
            if rolled_out(p) and rollout is not None:
                step = functools.partial(
                    rollouts.start_for_schedule, self._db, p.record, p.commands[0][0], rollout
                )
                if await _retried(p, "commands", step, attempts=_PUBLISH_ATTEMPTS):
                    sent_at[i] = self._clock()

        lateness: list[float | None] = []
        for p, at in zip(planned, sent_at, strict=True):
            if at is None:
                lateness.append(None)
                continue
            late = (at - p.fire.nominal).total_seconds()
            lateness.append(late)
            self.metrics.lateness.observe(max(0.0, late))
            log.debug(
                "scheduled fire dispatched",
                schedule_id=p.entry.schedule.id,
                exec_id=p.record.exec_id,
                nominal=_iso(p.fire.nominal),
                pcs=len(p.pcs),
                late_ms=round(late * 1000, 1),
                caught_up=p.fire.caught_up,
            )

        with_record = [p for p in planned if p.record_message is not None]
        for p, error in zip(with_record, await settle(records_pending), strict=True):
            if error is not None:
                assert p.record_message is not None
                step = functools.partial(publish_one, bus, p.record_message)
                await _retried(p, "record", step, attempts=_PUBLISH_ATTEMPTS - 1)

        good = [p for p, late in zip(planned, lateness, strict=True) if late is not None]
        audits = [audit_message(p.record, p.commands[0][0]) for p in good]
        for p, msg, error in zip(
            good, audits, await settle(await send_pipelined(bus, audits)), strict=True
        ):
            if error is not None:
                try:
                    await publish_one(bus, msg)
                except Exception:
                    # The commands are out: nothing to undo. Log loudly instead.
                    log.exception("audit record not written", exec_id=p.record.exec_id)
        log.debug(
            "scheduled fires published",
            fires=len(planned),
            send_ms=round((t_sent - t_start) * 1000, 1),
            total_ms=round((time.perf_counter() - t_start) * 1000, 1),
        )
        return lateness

    def _expire_marks(self, schedule_id: str, now: datetime) -> None:
        marks = self.marks.get(schedule_id)
        if marks:
            for pc in [pc for pc, m in marks.items() if now >= m.until]:
                del marks[pc]


def _missed_row(decision: Missed, entry: Entry) -> DecisionRow:
    first, last = decision.nominals[0], decision.nominals[-1]
    detail = (
        f"{len(decision.nominals)}{'+' if decision.more else ''} occurrence(s) "
        f"from {_iso(first)} to {_iso(last)} came due while the scheduler could not fire "
        f"them (catchup: {entry.schedule.catchup})"
    )
    return DecisionRow(
        decision.schedule_id,
        occurrence_id(decision.schedule_id, last),
        last,
        "missed",
        f"catchup_{entry.schedule.catchup}",
        detail,
        count=len(decision.nominals),
    )


def _reconnects(bus: Bus) -> int:
    """How often the connection was re-established (notifications may be lost across)."""
    return int(bus.nc.stats.get("reconnects", 0))


async def _publish_each(bus: Bus, messages: list[Outgoing]) -> None:
    await asyncio.gather(*(publish_one(bus, m) for m in messages))


async def _retried(p: _Planned, what: str, step: Callable[[], Any], *, attempts: int) -> bool:
    """``step`` until it succeeds, at most ``attempts`` times (with a short backoff)."""
    for attempt in range(1, attempts + 1):
        try:
            await step()
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if attempt == attempts:
                log.error(
                    "scheduled fire not published",
                    step=what,
                    exec_id=p.record.exec_id,
                    schedule_id=p.entry.schedule.id,
                    error=str(exc),
                )
                return False
            await asyncio.sleep(0.2 * attempt)
    return False


async def _gather_bounded(coros: list[Any], limit: int = _FIRE_CONCURRENCY) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(coro: Any) -> Any:
        async with gate:
            return await coro

    return list(await asyncio.gather(*(run(c) for c in coros)))
