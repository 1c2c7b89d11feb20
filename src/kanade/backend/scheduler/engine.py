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
* **dispatch** — through the exec service (pin → record → commands → audit) with
  ``initiated_by = "schedule:<id>"`` and the nominal time on the exec row.

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
   net.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kanade.backend import approvals, rollouts
from kanade.backend.db import reads
from kanade.backend.db.database import Database
from kanade.backend.execs import ExecService, command_subjects, expected_pcs
from kanade.backend.jobs import JobCatalog
from kanade.backend.records import ExecRecord
from kanade.backend.scheduler import state, store
from kanade.backend.scheduler.lease import Lease
from kanade.backend.scheduler.plans import backend_local_zone, plan_for
from kanade.backend.scheduler.store import DecisionRow
from kanade.backend.schedules import decode_schedule
from kanade.bus.connection import Bus
from kanade.bus.kvsnapshot import kv_snapshot
from kanade.core import subjects
from kanade.core.dispatch import build_command
from kanade.core.fleet import alive_cutoff
from kanade.core.models.job import JobManifest
from kanade.core.models.schedule import Schedule
from kanade.core.models.target import Target
from kanade.core.models.wire import Command
from kanade.core.scheduling import (
    DEFAULT_LATE_TOLERANCE,
    RECONCILE_POLL,
    DispatchMark,
    Fire,
    Missed,
    Plan,
    Skip,
    decide_tick,
    exec_id_for,
    make_dispatch_mark,
    next_fire,
    occurrence_id,
    per_pc_to_fire,
    per_target_decision,
    request_id_for,
)

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
        execs: ExecService,
        *,
        registry: CollectorRegistry | None = None,
        reconcile_poll: timedelta = RECONCILE_POLL,
        lease_ttl_s: float = 10.0,
        lease_key: str = state.LEASE_KEY,
        late_tolerance: timedelta = DEFAULT_LATE_TOLERANCE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        local_tz: tzinfo | None = None,
        holder: str | None = None,
    ) -> None:
        self._db = db
        self._bus = bus
        self._execs = execs
        self.metrics = SchedulerMetrics(registry)
        self.reconcile_poll = reconcile_poll
        self._clock = clock
        self.local_tz = local_tz or backend_local_zone()
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = Lease(self._dispatch_kv, self.holder, ttl_s=lease_ttl_s, key=lease_key)
        self.late_tolerance = late_tolerance
        self.entries: dict[str, Entry] = {}
        self.marks: dict[str, dict[str, DispatchMark]] = {}
        self._changes: dict[str, bytes | None] = {}
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
        }

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
        self.entries.clear()
        self.marks.clear()
        self.metrics.schedules.set(0)
        log.info("scheduler stepped down", holder=self.holder)

    async def _dispatch_kv(self) -> Any:
        return await self._bus().kv(subjects.KV_DISPATCH)

    async def _lead(self) -> None:
        bus = self._bus()
        log.info("scheduler leading", holder=self.holder, local_tz=str(self.local_tz))
        prefix = f"$KV.{subjects.KV_SCHEDULES}."

        async def on_change(msg: Msg) -> None:
            op = (msg.headers or {}).get("KV-Operation")
            self._changes[msg.subject[len(prefix) :]] = (
                None if op in ("DEL", "PURGE") else bytes(msg.data)
            )
            self._wake.set()

        sub = await bus.nc.subscribe(prefix + ">", cb=on_change)
        try:
            await self._resync(bus)
            last_resync = time.monotonic()
            while True:
                if not self.lease.held:
                    return  # the lease loop steps us down
                if time.monotonic() - last_resync > RESYNC_S:
                    await self._resync(bus)
                    last_resync = time.monotonic()
                elif self._changes:
                    await self._apply_changes(bus)
                now = self._clock()
                due = [
                    e for e in self.entries.values() if e.next_due is not None and e.next_due <= now
                ]
                if due:
                    await self._tick(bus, due, now)
                await self._refresh_idle_ticks(bus, now)
                await self._sleep()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _sleep(self) -> None:
        now = self._clock()
        timeout = MAX_SLEEP_S
        upcoming = [e.next_due for e in self.entries.values() if e.next_due is not None]
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
        await self._persist_new(bus)

    async def _apply_changes(self, bus: Bus) -> None:
        changes, self._changes = self._changes, {}
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
        entry = Entry(
            schedule, plan, last_tick, next_fire(plan, last_tick, self.local_tz), persisted
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
        kv = await bus.kv(subjects.KV_DISPATCH)

        async def one(entry: Entry) -> None:
            await state.put_tick(kv, entry.schedule.id, entry.last_tick)
            entry.persisted = entry.last_tick

        await _gather_bounded([one(e) for e in entries])

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

    # --- one tick --------------------------------------------------------------------------
    async def _tick(self, bus: Bus, due: list[Entry], now: datetime) -> None:
        self.ticks += 1
        t_start = time.perf_counter()
        freeze = await state.read_freeze(bus)
        rows: list[DecisionRow] = []
        fires: list[tuple[Entry, Fire]] = []
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
        claimed, republish = await self._claim(planned, rows, now)
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
        if self.ticks % 500 == 0:
            await self._db.write(store.prune_decisions)

    async def _plan(
        self, bus: Bus, fires: list[tuple[Entry, Fire]], now: datetime, rows: list[DecisionRow]
    ) -> list[_Planned]:
        catalog = JobCatalog(bus)
        job_ids = sorted({e.schedule.job_id for e, _ in fires})
        jobs = dict(
            zip(job_ids, await asyncio.gather(*(catalog.get(j) for j in job_ids)), strict=True)
        )
        # require_approval jobs fire only at a version approved for unattended runs (§4.8).
        unattended = await approvals.unattended_approved(
            self._db,
            [(j.id, j.version) for j in jobs.values() if j is not None and j.require_approval],
        )
        digests: dict[str, str | None] = {}
        for job_id, job in jobs.items():
            if job is not None and (not job.require_approval or job_id in unattended):
                digests[job_id] = await self._execs.pin_for_schedule(bus, job)

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
            out.append(self._build(entry, fire, job, digests.get(job.id), target, pcs, now, note))
        return out

    def _build(
        self,
        entry: Entry,
        fire: Fire,
        job: JobManifest,
        script_sha256: str | None,
        target: Target,
        pcs: list[str],
        now: datetime,
        note: str | None,
    ) -> _Planned:
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
                issued_at=now,
                deadline_at=fire.deadline_at,
                jitter_s=plan.jitter.total_seconds(),
                schedule_id=schedule.id,
                nominal_time=fire.nominal,
                max_timeout_s=self._execs._budgets.max_timeout_s,
                max_output_bytes=self._execs._budgets.max_output_bytes,
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
                    plan, pc, dispatched_at=now, timeout=timeout, occurrence_id=occurrence
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
            created_at=now,
            request_id=request_id_for(occurrence),
            inventory_hint=None
            if first is None or first.inventory is None
            else first.inventory.model_dump(mode="json"),
            check_hint=None
            if first is None or first.check is None
            else first.check.model_dump(mode="json"),
        )
        return _Planned(entry, fire, job, record, commands, pcs, reconcile, note, marks)

    async def _claim(
        self, planned: list[_Planned], rows: list[DecisionRow], now: datetime
    ) -> tuple[set[str], set[str]]:
        """One transaction: claim the exec rows, log every decision, bump the counters.
        Returns (claimed, to re-publish) exec ids."""
        by_exec = {p.record.exec_id: p for p in planned}
        result: dict[str, set[str]] = {"claimed": set(), "republish": set()}

        def work(conn: Any) -> None:
            claimed = store.claim_executions(conn, [p.record.row() for p in planned], now)
            existing = store.existing_executions(conn, set(by_exec) - claimed)
            republish: set[str] = set()
            for exec_id, p in by_exec.items():
                fire = p.fire
                if exec_id in claimed:
                    detail = f"dispatched to {len(p.pcs)} pc(s)"
                    if fire.caught_up:
                        detail += " (catch-up: ran once on recovery)"
                    if p.note:
                        detail += f"; {p.note}"
                    rows.append(
                        DecisionRow(
                            p.entry.schedule.id,
                            fire.occurrence_id,
                            fire.nominal,
                            "fired",
                            "caught_up" if fire.caught_up else None,
                            detail,
                            exec_id=exec_id,
                            pcs=len(p.pcs),
                            lateness_s=fire.late.total_seconds(),
                        )
                    )
                    continue
                row = existing.get(exec_id)
                created = row.get("created_at") if row else None
                young = isinstance(created, datetime) and now - created <= REPUBLISH_WINDOW
                if young:
                    republish.add(exec_id)
                rows.append(
                    DecisionRow(
                        p.entry.schedule.id,
                        fire.occurrence_id,
                        fire.nominal,
                        "duplicate",
                        "already_fired",
                        "the exec row of this occurrence exists: fired before (restart, "
                        "another backend or a clock step)"
                        + ("; re-published for the broker to deduplicate" if young else ""),
                        exec_id=exec_id,
                    )
                )
            store.record_decisions(conn, rows, now)
            result["claimed"], result["republish"] = claimed, republish

        if planned or rows:
            await self._db.write(work)
        for exec_id in result["republish"]:
            log.warning(
                "occurrence already claimed; re-publishing for broker dedup", exec_id=exec_id
            )
        return result["claimed"], result["republish"]

    async def _publish(self, bus: Bus, planned: list[_Planned]) -> None:
        """Marks, then every command, then every exec record, then every audit.

        The exec service publishes an exec's record before its commands so that no result
        can reach a database that never heard of the exec; here the row is already in the
        database (claimed before anything is published), so the commands — what lateness
        is about — go first, and the projector's work on the records does not compete
        with them. A crash between commands and record is repaired like any crash after
        the claim: the restarted scheduler re-decides the occurrence (its tick was not
        persisted yet) and re-publishes all of it within :data:`REPUBLISH_WINDOW`; the
        broker drops what had gone out already.
        """
        if not planned:
            return
        kv = await bus.kv(subjects.KV_DISPATCH)

        async def marks(p: _Planned) -> None:
            # Marks first: a crash before the commands leaves the pcs blocked until the
            # mark ends (then they fire again), never fired twice.
            for mark in p.marks:
                self.marks.setdefault(p.entry.schedule.id, {})[mark.pc_id] = mark
                await kv.put(
                    state.mark_key(p.entry.schedule.id, mark.pc_id), state.encode_mark(mark)
                )

        async def retried(p: _Planned, what: str, step: Callable[[], Any]) -> bool:
            for attempt in range(1, _PUBLISH_ATTEMPTS + 1):
                try:
                    await step()
                    return True
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if attempt == _PUBLISH_ATTEMPTS:
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

        await _gather_bounded([marks(p) for p in planned if p.marks])

        async def commands(p: _Planned) -> bool:
            step = functools.partial(self._execs.publish_commands, bus, p.commands)
            if p.entry.schedule.rollout is not None and not p.reconcile and p.commands:
                # Sent in waves by the rollout runner (kanade.backend.rollouts), not now.
                step = functools.partial(
                    rollouts.start_for_schedule,
                    self._db,
                    p.record,
                    p.commands[0][0],
                    p.entry.schedule.rollout,
                )
            sent = await retried(p, "commands", step)
            if sent:
                late = (self._clock() - p.fire.nominal).total_seconds()
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
            return sent

        sent = await _gather_bounded([commands(p) for p in planned])
        await _gather_bounded(
            [
                retried(p, "record", functools.partial(self._execs.publish_record, bus, p.record))
                for p in planned
            ]
        )
        await _gather_bounded(
            [
                self._execs.audit_dispatch(bus, p.record, p.commands[0][0])
                for p, good in zip(planned, sent, strict=True)
                if good and p.commands
            ]
        )

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


async def _gather_bounded(coros: list[Any], limit: int = _FIRE_CONCURRENCY) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(coro: Any) -> Any:
        async with gate:
            return await coro

    return list(await asyncio.gather(*(run(c) for c in coros)))
