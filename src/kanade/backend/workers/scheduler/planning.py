"""A tick's decisions and the fires they become: :func:`~kanade.core.scheduling.decide_tick`
for every due schedule (fires, skips, missed occurrences), then each fire planned — job
read at fire time and pinned, approval, expected pcs or the reconcile pick, max_concurrent
— and built (:mod:`.building`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from kanade.backend.catalog import pins
from kanade.backend.catalog.jobs import JobCatalog
from kanade.backend.store import agents, approvals
from kanade.backend.store import scheduling as store
from kanade.backend.store.scheduling import DecisionRow
from kanade.backend.workers.scheduler.building import Planned, build
from kanade.backend.workers.scheduler.catalog_watch import Entry
from kanade.backend.workers.scheduler.context import SchedulerContext
from kanade.bus.connection import Bus
from kanade.core.instants import format_instant
from kanade.core.models.target import Target
from kanade.core.scheduling import (
    DispatchMark,
    Fire,
    Freeze,
    Missed,
    Skip,
    decide_tick,
    occurrence_id,
    per_pc_to_fire,
    per_target_decision,
)
from kanade.core.targeting import expected_pcs

log = structlog.get_logger(__name__)


@dataclass
class Decided:
    """A tick's decisions for its due schedules."""

    fires: list[tuple[Entry, Fire]] = field(default_factory=list)
    rows: list[DecisionRow] = field(default_factory=list)
    """Skips and missed occurrences (planning appends its own skips)."""
    firsts: dict[str, datetime] = field(default_factory=dict)
    """The first occurrence due of each calendar/cron schedule: the one a previous leader
    may have prepared (claimed) and then not published (crash, lost lease)."""


class Planner:
    def __init__(
        self,
        ctx: SchedulerContext,
        marks: dict[str, dict[str, DispatchMark]],
        *,
        up_since: datetime,
    ) -> None:
        self._ctx = ctx
        self._marks = marks
        self.up_since = up_since
        """When this term began: an occurrence due before it came while no scheduler was
        up to fire it, so it is missed (or caught up), never on time (SPEC §2.2 catchup)."""

    def decide(self, due: list[Entry], now: datetime, freeze: Freeze | None) -> Decided:
        """Decide every due schedule as of ``now``; advances the entries' ``last_tick``
        and ``next_due``."""
        out = Decided(
            firsts={
                e.schedule.id: e.next_due
                for e in due
                if e.next_due is not None and not e.plan.is_reconcile
            }
        )
        for entry in due:
            outcome = decide_tick(
                entry.plan,
                last_tick=entry.last_tick,
                now=now,
                local_tz=self._ctx.local_tz,
                freeze=freeze,
                late_tolerance=self._ctx.late_tolerance,
                up_since=self.up_since,
            )
            entry.last_tick = outcome.last_tick
            entry.next_due = outcome.next_fire
            for decision in outcome.decisions:
                if isinstance(decision, Fire):
                    out.fires.append((entry, decision))
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
                    out.rows.append(
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
                        nominal=format_instant(decision.nominal),
                        reason=decision.reason,
                        detail=decision.detail,
                    )
                elif isinstance(decision, Missed):
                    out.rows.append(missed_row(decision, entry))
                    log.warning(
                        "fires missed",
                        schedule_id=decision.schedule_id,
                        count=len(decision.nominals),
                        first=format_instant(decision.nominals[0]),
                        last=format_instant(decision.nominals[-1]),
                    )
        return out

    async def plan(
        self,
        bus: Bus,
        fires: list[tuple[Entry, Fire]],
        now: datetime,
        rows: list[DecisionRow],
        *,
        deferred: list[Entry] | None = None,
    ) -> list[Planned]:
        """Build the fires (job read at fire time, pinned; expected pcs; commands).

        With ``deferred`` (a list to fill) the fires are being prepared ahead: one whose
        job is missing or requires approval, or whose schedule caps concurrent runs, is
        not built but put in ``deferred`` — its skip reason or its approval and in-flight
        facts are for the tick at the instant to establish — and the rest are stamped
        with their nominal time (issued_at, created_at) instead of ``now``.
        """
        ctx = self._ctx
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
            await approvals.unattended_approved(ctx.db, needs_approval)
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
            alive = agents.alive_agents(conn, now)
            return (
                alive,
                store.reconcile_facts(conn, reconcile_ids) if reconcile_ids else {},
                store.in_flight_by_job(conn, capped_jobs) if capped_jobs else {},
            )

        alive, reconcile, in_flight = await ctx.db.read(facts)
        alive_ids = {pc for pc, _ in alive}
        out: list[Planned] = []
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
                    nominal=format_instant(fire.nominal),
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
                marks = self._marks.get(schedule.id, {})
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
            out.append(
                build(entry, fire, job, digests.get(job.id), target, pcs, stamp, note, ctx.budgets)
            )
        return out

    def _expire_marks(self, schedule_id: str, now: datetime) -> None:
        marks = self._marks.get(schedule_id)
        if marks:
            for pc in [pc for pc, m in marks.items() if now >= m.until]:
                del marks[pc]


def missed_row(decision: Missed, entry: Entry) -> DecisionRow:
    first, last = decision.nominals[0], decision.nominals[-1]
    detail = (
        f"{len(decision.nominals)}{'+' if decision.more else ''} occurrence(s) "
        f"from {format_instant(first)} to {format_instant(last)} came due while the "
        f"scheduler could not fire them (catchup: {entry.schedule.catchup})"
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
