"""The agent's local scheduler: ``runs_on: agent`` schedules fire here (SPEC §3.6). This
module holds its loop, activation, ticks, claims and the results it learns; the catalogs,
registrations and the command of an occurrence are the sibling modules'.

Registration from the mirrored catalogs, re-sync, offline firing, gates, dedup, claims and
the on-demand loading of the scheduling core are described rule by rule in
``docs/agent-local-scheduler.md``; every rule itself is :mod:`kanade.core.scheduling`'s.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

from kanade.agent.durable.ledger import Admission
from kanade.agent.durable.schedstore import CachedCatalog, SchedulerStore
from kanade.agent.fleet.mirror import KvMirror
from kanade.agent.fleet.state import FleetState
from kanade.agent.scheduling.documents import might_apply
from kanade.agent.scheduling.registry import Registered, Registry
from kanade.core.digests import EMPTY_SET_VERSION
from kanade.core.instants import Clock, format_instant, system_clock
from kanade.worker import Worker

# The scheduling core (and the sibling modules that only an active scheduler uses) is
# imported where it is used, once the scheduler is active (see "Loaded on demand" in
# docs/agent-local-scheduler.md); these names are for annotations only.
if TYPE_CHECKING:
    from nats.aio.client import Client

    from kanade.core.models.decisions import DecisionResult, ScheduleDecisionReport
    from kanade.core.models.job import JobManifest
    from kanade.core.models.schedule import Schedule
    from kanade.core.models.wire import Command, Result
    from kanade.core.scheduling import ClaimTable, Fire, Freeze, Skip

log = logging.getLogger("kanade.agent.scheduler")


Submit = Callable[["Command"], Admission]
Report = Callable[["ScheduleDecisionReport"], None]


# --- the scheduler -----------------------------------------------------------------------------
class LocalScheduler(Worker):
    """One agent identity's local scheduler. Created by the agent (which wires
    :meth:`on_finished` into its result path and :attr:`version` into its heartbeats) and
    run as one task with :meth:`run`. Inactive (the scheduling core not loaded) until
    :meth:`activate`: see "Loaded on demand" in ``docs/agent-local-scheduler.md``.

    Each step re-evaluates the catalogs when they changed and decides what is due; it then
    sleeps until the next fire or a wake-up (a catalog, group or result change)."""

    name = "local scheduler"

    local_tz: tzinfo
    claims: ClaimTable

    def __init__(
        self,
        *,
        pc_id: str,
        data_dir: Path,
        fleet: FleetState,
        submit: Submit,
        groups: Callable[[], Sequence[str]],
        connection: Callable[[], Client | None] = lambda: None,
        in_flight: Callable[[str], bool] = lambda _request_id: False,
        on_applied: Callable[[str], None] | None = None,
        report: Report | None = None,
        durable: bool = True,
        clock: Clock = system_clock,
        local_tz: tzinfo | None = None,
        reconcile_poll: timedelta | None = None,
    ) -> None:
        super().__init__(interval=math.inf)  # unused: next_delay is the time to the next fire
        self.pc_id = pc_id
        self.fleet = fleet
        self._submit = submit
        self._groups = groups
        self._connection = connection
        self._in_flight = in_flight
        self._on_applied = on_applied
        self._report = report
        self._clock = clock
        self._local_tz = local_tz
        self.store = SchedulerStore(data_dir, durable=durable)

        self.registry = Registry(reconcile_poll)
        self.jobs: dict[str, JobManifest] = {}
        self.freeze: Freeze | None = None
        self.digests: dict[str, str] = {}
        self.version = EMPTY_SET_VERSION
        self.successes: dict[str, datetime] = {}
        self._cache: CachedCatalog | None = None
        self.active = False
        # When this process's scheduler loop started: an occurrence due before it was
        # due while the agent was down, so `catchup` decides it (core `was_down_for`).
        self.up_since: datetime | None = None
        self._dirty = True
        self._warned: set[tuple[str, str]] = set()
        # Counters, for logs and tests.
        self.fired = 0
        self.skipped_ticks = 0
        # What every decision report carries (SPEC §4.4: the backend shows them).
        self.decision_epoch = ""
        self.decision_totals: dict[str, dict[str, int]] = {}
        fleet.listen(self._on_fleet_change)
        if self.store.has_state():
            self.activate()

    def activate(self) -> None:
        """Load the scheduling core and this scheduler's files (once; later calls do nothing)."""
        if self.active:
            return
        from kanade.core.scheduling import ClaimTable
        from kanade.core.scheduling.timezones import local_zone

        self.local_tz = self._local_tz or local_zone()
        self.successes = self.store.load_successes()
        ticks, claims = self.store.load_state()
        self.registry.saved_ticks = ticks
        self.claims = ClaimTable(claims)
        self._cache = self.store.load_catalog()
        if self._cache is not None:
            self.digests = dict(self._cache.digests)
        epoch, totals = self.store.load_decisions()
        self.decision_totals = totals
        if epoch is None:  # a new decision file: its totals count from zero
            epoch = os.urandom(8).hex()
            self.store.save_decisions(epoch, totals)
        self.decision_epoch = epoch
        self.active = True
        log.info("local scheduler active (zone for tz: local = %s)", self.local_tz)

    def _may_apply_any(self) -> bool:
        """Whether a schedule in the mirrored catalog may be one this agent applies."""
        groups = list(self._groups())
        return any(
            might_apply(raw, self.pc_id, groups) for raw in self.fleet.schedules.values.values()
        )

    # --- wiring -------------------------------------------------------------------------------
    def _on_fleet_change(self, mirror: KvMirror) -> None:
        fleet = self.fleet
        if mirror in (
            fleet.schedules,
            fleet.jobs,
            fleet.freeze,
            fleet.membership,
            fleet.revocations,
        ):
            self.mark_dirty()

    def mark_dirty(self) -> None:
        """Re-evaluate every schedule at the next wake-up (now)."""
        self._dirty = True
        self.wake()

    @property
    def applied(self) -> list[Schedule]:
        return self.registry.applied

    @property
    def registered(self) -> dict[str, Registered]:
        return self.registry.registered

    # --- the loop -----------------------------------------------------------------------------
    async def setup(self) -> None:
        self.up_since = self._clock()
        if self.active:
            log.info("local scheduler started (zone for tz: local = %s)", self.local_tz)
        else:
            log.info("local scheduler started (inactive: no runs_on: agent schedule for it yet)")

    async def teardown(self) -> None:
        log.info("local scheduler stopped")

    async def step(self) -> None:
        if self._dirty:
            self._dirty = False
            try:
                await self.refresh()
            except Exception:
                # Logged, not retried: the tick below must still run, and the next catalog
                # change marks it dirty again.
                log.exception("local scheduler: re-evaluating the catalogs failed")
        if self._stopping:
            return  # stopped during the refresh: no new fires while the agent shuts down
        self.tick(self._clock())

    def next_delay(self, more: bool | None, failed: bool) -> float:
        if failed:  # a tick that raised: backed off, or a due schedule would spin the loop
            return super().next_delay(more, failed)
        return self.seconds_until_next(self._clock())

    def seconds_until_next(self, now: datetime) -> float:
        return self.registry.seconds_until_next(now)

    # --- catalogs → registrations ----------------------------------------------------------------
    async def refresh(self) -> None:
        """Read the catalogs (live mirrors once synced, the on-disk cache before), resolve
        script-object digests while connected, and apply the result. An inactive scheduler
        only checks whether it must activate (nothing can apply to it otherwise)."""
        if not self.active:
            if not self._may_apply_any():
                return
            self.activate()
        groups = list(self._groups())
        from kanade.agent.scheduling.catalog import (
            catalog_to_cache,
            read_catalogs,
            resolve_digests,
        )

        read = read_catalogs(self.fleet, self._cache or CachedCatalog(), self.pc_id, groups)
        await resolve_digests(self._connection(), read.wanted, read.jobs, self.digests)
        self.jobs = read.jobs
        self.freeze = read.freeze
        self.apply(read.wanted, self._clock())
        if read.live and self.registry.saved_ticks:
            self.registry.saved_ticks.clear()  # left-overs are of schedules not applied any more
            self._save_state()  # ... and not kept on disk either
        if read.live:
            self._prune_successes(set(read.everything))
            catalog = catalog_to_cache(
                self.fleet,
                applied={sid: reg.schedule for sid, reg in self.registered.items()},
                jobs=self.jobs,
                freeze=self.freeze,
                digests=self.digests,
                previous=self._cache,
                groups=groups,
            )
            if catalog is not None:  # None: nothing applied, nothing cached, no file
                self._cache = catalog
                self.store.save_catalog(catalog)

    def _prune_successes(self, known: set[str]) -> None:
        gone = [sid for sid in self.successes if sid not in known]
        if gone:
            for sid in gone:
                del self.successes[sid]
            self.store.save_successes(self.successes)

    def apply(self, wanted: Iterable[Schedule], now: datetime) -> None:
        """Make the registrations exactly ``wanted`` and publish the new set's version."""
        from kanade.core.scheduling import schedule_set_version

        changed = self.registry.apply(wanted, now, self.local_tz)
        if not changed:
            return
        self._save_state()
        version = schedule_set_version(self.applied)
        if version != self.version:
            self.version = version
            log.info("applied schedule set %s (%d schedule(s))", version, len(self.registered))
            if self._on_applied is not None:
                self._on_applied(version)
        self.wake()

    # --- ticks --------------------------------------------------------------------------------
    def tick(self, now: datetime) -> None:
        """Decide every registered schedule that is due at ``now``."""
        if not self.registered:
            return
        from kanade.core.scheduling import Fire, Missed, Skip, decide_tick

        changed = False
        for reg in list(self.registered.values()):
            if reg.next_due is None or reg.next_due > now:
                continue
            outcome = decide_tick(
                reg.plan,
                last_tick=reg.last_tick,
                now=now,
                local_tz=self.local_tz,
                freeze=self.freeze,
                up_since=self.up_since,
            )
            changed = changed or outcome.last_tick != reg.last_tick
            reg.last_tick = outcome.last_tick
            reg.next_due = outcome.next_fire
            for decision in outcome.decisions:
                if isinstance(decision, Fire):
                    self._on_fire(reg, decision, now)
                elif isinstance(decision, Skip):
                    self._on_skip(reg, decision, now)
                elif isinstance(decision, Missed):
                    more = " (and more)" if decision.more else ""
                    log.warning(
                        "schedule %s: %d occurrence(s) missed%s, first %s, last %s (catchup: %s)",
                        reg.plan.schedule_id,
                        len(decision.nominals),
                        more,
                        format_instant(decision.nominals[0]),
                        format_instant(decision.nominals[-1]),
                        reg.plan.catchup,
                    )
                    self._decided(
                        decision.schedule_id,
                        decision.nominals[-1],
                        "missed",
                        now,
                        reason=f"catchup_{reg.plan.catchup}",
                        detail=(
                            f"{len(decision.nominals)}{'+' if decision.more else ''} "
                            f"occurrence(s) from {format_instant(decision.nominals[0])} to "
                            f"{format_instant(decision.nominals[-1])} came due while the agent "
                            f"could not fire them (catchup: {reg.plan.catchup})"
                        ),
                        count=len(decision.nominals),
                    )
        if changed:
            self._save_state()

    def _on_skip(self, reg: Registered, skip: Skip, now: datetime) -> None:
        if not skip.quiet:
            self._decided(
                skip.schedule_id, skip.nominal, "skipped", now, reason=skip.reason,
                detail=skip.detail,
            )  # fmt: skip
        if skip.reason == "deadline_passed":
            # Its result goes through the normal path: the agent's deadline gate skips it (125).
            log.warning("schedule %s: %s", skip.schedule_id, skip.detail)
            self._dispatch(reg, skip.nominal, now, claim=False)
            return
        self.skipped_ticks += 0 if skip.quiet else 1
        level = logging.DEBUG if skip.quiet else logging.INFO
        log.log(
            level,
            "schedule %s: occurrence %s skipped: %s",
            skip.schedule_id,
            format_instant(skip.nominal),
            skip.detail,
        )

    def _on_fire(self, reg: Registered, fire: Fire, now: datetime) -> None:
        from kanade.core.scheduling import pc_decision

        dedup = reg.plan.dedup
        if dedup is not None:
            decision = pc_decision(
                dedup,
                self.pc_id,
                now=now,
                alive=True,
                last_success=self.successes.get(reg.plan.schedule_id),
            )
            if not decision.would_fire:
                log.debug(
                    "schedule %s: poll %s: not firing: %s",
                    reg.plan.schedule_id,
                    format_instant(fire.nominal),
                    decision.detail,
                )
                return
            log.info(
                "schedule %s: poll %s fires: %s",
                reg.plan.schedule_id,
                format_instant(fire.nominal),
                decision.detail,
            )
        elif fire.caught_up:
            log.info(
                "schedule %s: catching up occurrence %s (%s late)",
                reg.plan.schedule_id,
                format_instant(fire.nominal),
                fire.late,
            )
        self._dispatch(reg, fire.nominal, now, claim=True)

    def _warn_once(self, schedule_id: str, what: str) -> None:
        key = (schedule_id, what)
        if key in self._warned:
            log.debug("schedule %s: %s", schedule_id, what)
            return
        self._warned.add(key)
        log.warning("schedule %s: %s", schedule_id, what)

    def _dispatch(
        self,
        reg: Registered,
        nominal: datetime,
        now: datetime,
        *,
        claim: bool,
    ) -> None:
        from kanade.agent.scheduling.firing import NotFired, occurrence_command
        from kanade.core.scheduling import claim_until

        schedule, plan = reg.schedule, reg.plan
        sid = schedule.id
        offline = not self.fleet.revocations.synced and self._cache is not None
        try:
            cmd = occurrence_command(
                schedule,
                plan,
                nominal,
                pc_id=self.pc_id,
                jobs=self.jobs,
                digests=self.digests,
                revoked_offline=self._cache.revoked if offline and self._cache else (),
            )
        except NotFired as why:
            self._warn_once(sid, str(why))
            return
        request_id = cmd.request_id
        if claim:
            until = claim_until(
                now,
                plan.jitter,
                timedelta(seconds=cmd.timeout_s),
                plan.retry_max,
                plan.retry_backoff,
            )
            attempt = self.claims.try_claim(sid, request_id, now=now, until=until)
            if not attempt.granted:
                self.skipped_ticks += 1
                held = (
                    f"the previous run ({attempt.claim.owner}) still holds the claim until "
                    f"{format_instant(attempt.claim.until)}"
                )
                log.info(
                    "schedule %s: occurrence %s skipped: %s", sid, format_instant(nominal), held
                )
                self._decided(sid, nominal, "skipped", now, reason="claim_held", detail=held)
                return
            if attempt.warning:
                log.warning("%s", attempt.warning)
            self._save_state()
        admission = self._submit(cmd)
        if admission is Admission.NEW:
            self.fired += 1
            log.info(
                "schedule %s: fired occurrence %s (request %s)",
                sid,
                format_instant(nominal),
                request_id,
            )
            if claim:  # a fire (a deadline skip was reported as the skip it is)
                self._decided(sid, nominal, "fired", now, request_id=request_id)
            return
        log.info(
            "schedule %s: occurrence %s was already admitted (%s); not run again",
            sid,
            format_instant(nominal),
            admission.value,
        )
        if claim and not self._in_flight(request_id) and self.claims.release(sid, request_id):
            self._save_state()

    # --- decisions reported to the backend -----------------------------------------------------
    def _decided(
        self,
        schedule_id: str,
        nominal: datetime,
        result: DecisionResult,
        now: datetime,
        *,
        reason: str | None = None,
        detail: str = "",
        count: int = 1,
        request_id: str | None = None,
    ) -> None:
        """Count a decision and report it (SPEC §4.4: skipped and missed fires are visible);
        the totals are saved first, so a lost report is made up by the next one."""
        totals = self.decision_totals.setdefault(
            schedule_id, {"fired": 0, "skipped": 0, "missed": 0}
        )
        totals[result] += count
        self.store.save_decisions(self.decision_epoch, self.decision_totals)
        if self._report is None:
            return
        from kanade.core.models.decisions import (
            DETAIL_MAX,
            REASON_MAX,
            DecisionTotals,
            ScheduleDecisionReport,
            bounded,
        )
        from kanade.core.scheduling import occurrence_id

        try:
            self._report(
                ScheduleDecisionReport(
                    pc_id=self.pc_id,
                    schedule_id=schedule_id,
                    occurrence_id=occurrence_id(schedule_id, nominal),
                    nominal_time=nominal,
                    decided_at=now,
                    result=result,
                    reason=bounded(reason, REASON_MAX),
                    detail=bounded(detail, DETAIL_MAX) or "",
                    count=count,
                    request_id=request_id,
                    epoch=self.decision_epoch,
                    totals=DecisionTotals(**totals),
                )
            )
        except Exception:  # e.g. a full disk: the next report carries the totals
            log.exception("schedule %s: decision not reported", schedule_id)

    # --- results ------------------------------------------------------------------------------
    def _is_local_fire(self, cmd: Command) -> bool:
        sid = cmd.schedule_id
        if not self.active or sid is None or cmd.nominal_time is None:
            return False
        from kanade.core.scheduling import occurrence_id, request_id_for

        held = self.claims.get(sid)
        if held is not None and held.owner == cmd.request_id:
            return True
        try:
            derived = request_id_for(occurrence_id(sid, cmd.nominal_time), self.pc_id)
        except ValueError:
            return False
        return sid in self.registered and derived == cmd.request_id

    def on_finished(self, cmd: Command, result: Result) -> None:
        """A command's result was recorded: release its claim (if it still holds it) and
        record a success when the script ran and exited 0."""
        if not self._is_local_fire(cmd):
            return
        sid = cmd.schedule_id
        assert sid is not None
        finish = self.claims.finish(
            sid,
            cmd.request_id,
            ran=not result.skipped and result.started_at is not None,
            exit_code=result.exit_code,
            skipped=result.skipped,
        )
        if finish.released:
            self._save_state()
        reg = self.registered.get(sid)
        if finish.record_success and reg is not None and reg.plan.is_reconcile:
            # Only per_pc dedup reads successes: calendar/cron fire every occurrence.
            when = cmd.nominal_time or result.finished_at
            previous = self.successes.get(sid)
            if previous is None or when > previous:
                self.successes[sid] = when
                self.store.save_successes(self.successes)
                log.info("schedule %s: success recorded (%s)", sid, format_instant(when))
        elif not finish.record_success and not result.skipped:
            log.info(
                "schedule %s: run %s exited %s (not a success)",
                sid,
                cmd.request_id,
                result.exit_code,
            )
        self.wake()

    # --- persistence --------------------------------------------------------------------------
    def _save_state(self) -> None:
        self.store.save_state(self.registry.last_ticks(), self.claims.snapshot())


__all__ = ["LocalScheduler", "Registered"]
