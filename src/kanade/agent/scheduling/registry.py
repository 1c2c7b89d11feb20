"""The local scheduler's registrations (SPEC §3.6): which schedules this agent applies, each
with its lowered plan, canonical digest, last tick and next due time; kept by schedule id,
re-registered when the digest changes, dropped when the schedule vanishes."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Final

from kanade.agent.scheduling.documents import digest_of

# The scheduling core is imported where it is used; these names are for annotations only.
if TYPE_CHECKING:
    from kanade.core.models.schedule import Schedule
    from kanade.core.scheduling import Plan

log = logging.getLogger("kanade.agent.scheduler")

MAX_SLEEP_S: Final = 60.0
"""The loop wakes at least once a minute (reconcile polls, clock steps)."""
_TINY: Final = timedelta(microseconds=1)


@dataclass
class Registered:
    schedule: Schedule
    plan: Plan
    digest: str
    last_tick: datetime
    next_due: datetime | None


class Registry:
    def __init__(self, reconcile_poll: timedelta | None = None) -> None:
        """``reconcile_poll``: how often a ``per_pc`` / ``per_target`` schedule polls
        (None: the core's one minute)."""
        self.reconcile_poll = reconcile_poll
        self.registered: dict[str, Registered] = {}
        # Last ticks saved by an earlier run, of schedules not (yet) registered.
        self.saved_ticks: dict[str, datetime] = {}

    @property
    def applied(self) -> list[Schedule]:
        return [r.schedule for r in sorted(self.registered.values(), key=lambda r: r.schedule.id)]

    def last_ticks(self) -> dict[str, datetime]:
        """What to persist: the saved ticks, overridden by the registered schedules'."""
        ticks = dict(self.saved_ticks)
        ticks.update({sid: reg.last_tick for sid, reg in self.registered.items()})
        return ticks

    def seconds_until_next(self, now: datetime) -> float:
        due = [r.next_due for r in self.registered.values() if r.next_due is not None]
        if not due:
            return MAX_SLEEP_S
        return min(MAX_SLEEP_S, max(0.0, (min(due) - now).total_seconds()))

    def apply(self, wanted: Iterable[Schedule], now: datetime, local_tz: tzinfo) -> bool:
        """Make the registrations exactly ``wanted`` (by id): unregister vanished ones,
        re-register changed ones, register new ones. True when anything changed."""
        from kanade.core.scheduling import is_past_one_shot, lower, prev_fire

        wanted_by_id = {s.id: s for s in wanted}
        changed = False
        for sid in list(self.registered):
            if sid not in wanted_by_id:
                del self.registered[sid]
                self.saved_ticks.pop(sid, None)
                log.info("schedule %s unregistered (deleted, disabled or no longer targeted)", sid)
                changed = True
        for sid, schedule in wanted_by_id.items():
            digest = digest_of(schedule)
            current = self.registered.get(sid)
            if current is not None and current.digest == digest:
                continue
            try:
                plan = (lower(schedule) if self.reconcile_poll is None
                        else lower(schedule, reconcile_poll=self.reconcile_poll))
            except Exception as exc:
                log.warning("schedule %s cannot be scheduled (%s); ignored", sid, exc)
                continue
            if current is not None:
                # A new definition applies from now on: nothing "missed" under the old one.
                last_tick = now
                log.info("schedule %s changed: re-registered", sid)
            else:
                # A tick saved by an earlier run: occurrences missed while the agent was
                # down follow catchup. Never in the future (a clock stepped backwards).
                last_tick = min(self.saved_ticks.pop(sid, now), now)
                log.info(
                    "schedule %s registered (job %s, %s)",
                    sid,
                    schedule.job_id,
                    schedule.when.shape,
                )
            if plan.is_reconcile and current is None:
                # Evaluate the current poll right away (a newly targeted pc, or a restart,
                # does not wait for the next minute). Re-deciding a poll already fired is
                # harmless: same command, so the claim, the success or the ledger stops it.
                poll = prev_fire(plan, now, local_tz)
                if poll is not None and poll - _TINY < last_tick:
                    last_tick = poll - _TINY
            if is_past_one_shot(plan, now, local_tz) and last_tick >= now:
                log.warning("schedule %s: its one-shot time is in the past; it will not fire", sid)
            self.registered[sid] = Registered(schedule, plan, digest, last_tick, now)
            changed = True
        return changed
