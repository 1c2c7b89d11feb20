"""Lowering (SPEC §4.4): :func:`lower` turns every ``when`` shape into a :class:`Plan`,
the only thing both schedulers look at afterwards.

The shapes and their plans: docs/scheduling-core.md, "Lowering".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Final, Literal

from kanade.core.models.constraints import TimeWindow
from kanade.core.models.schedule import Catchup, RunsOn, Schedule
from kanade.core.models.when import DaySpec
from kanade.core.scheduling.timezones import zone_for

RECONCILE_POLL: Final = timedelta(minutes=1)
"""Reconcile shapes are evaluated once a minute, on the minute (UTC)."""

DedupKind = Literal["per_pc_once", "per_pc_every", "per_target_once", "per_target_every"]


@dataclass(frozen=True)
class DedupMode:
    """How a reconcile poll picks pcs. ``every`` is set exactly for the ``*_every`` kinds."""

    kind: DedupKind
    every: timedelta | None = None

    def __post_init__(self) -> None:
        wants_every = self.kind.endswith("_every")
        if wants_every != (self.every is not None):
            raise ValueError(f"{self.kind} {'needs' if wants_every else 'takes no'} every")
        if self.every is not None and self.every <= timedelta(0):
            raise ValueError("every must be longer than 0s")

    @property
    def scope(self) -> Literal["per_pc", "per_target"]:
        return "per_pc" if self.kind.startswith("per_pc") else "per_target"

    @property
    def once(self) -> bool:
        return self.every is None

    def __str__(self) -> str:
        return self.kind if self.every is None else f"{self.kind}({self.every})"


def per_pc_once() -> DedupMode:
    return DedupMode("per_pc_once")


def per_pc_every(every: timedelta) -> DedupMode:
    return DedupMode("per_pc_every", every)


def per_target_once() -> DedupMode:
    return DedupMode("per_target_once")


def per_target_every(every: timedelta) -> DedupMode:
    return DedupMode("per_target_every", every)


@dataclass(frozen=True)
class ReconcileTrigger:
    mode: DedupMode
    poll: timedelta = RECONCILE_POLL


@dataclass(frozen=True)
class CalendarTrigger:
    """``at`` on ``days`` (empty = every day); ``one_shot`` set for a dated ``at``."""

    at: time
    days: tuple[DaySpec, ...] = ()
    one_shot: date | None = None

    def fires_on(self, day: date) -> bool:
        if self.one_shot is not None:
            return day == self.one_shot
        return not self.days or any(spec.matches(day) for spec in self.days)


@dataclass(frozen=True)
class CronTrigger:
    """A 5-field (minute first) or 6-field (seconds first, cronsim) expression."""

    expr: str


Trigger = ReconcileTrigger | CalendarTrigger | CronTrigger


@dataclass(frozen=True)
class Plan:
    """Everything a scheduler needs to fire one schedule, and nothing it must re-derive."""

    schedule_id: str
    trigger: Trigger
    tz: str = "utc"
    """``local`` | ``utc`` | IANA name; resolve with :meth:`zone`."""
    enabled: bool = True
    runs_on: RunsOn = "backend"
    active_from: date | datetime | None = None
    active_until: date | datetime | None = None
    window: TimeWindow | None = None
    skip_dates: frozenset[date] = field(default_factory=frozenset)
    starting_deadline: timedelta | None = None
    catchup: Catchup = "once"
    jitter: timedelta = timedelta(0)
    retry_max: int = 0
    retry_backoff: timedelta = timedelta(0)

    @property
    def is_reconcile(self) -> bool:
        return isinstance(self.trigger, ReconcileTrigger)

    @property
    def dedup(self) -> DedupMode | None:
        """The reconcile dedup mode; None for calendar/cron (they fire every occurrence)."""
        return self.trigger.mode if isinstance(self.trigger, ReconcileTrigger) else None

    @property
    def is_one_shot(self) -> bool:
        return isinstance(self.trigger, CalendarTrigger) and self.trigger.one_shot is not None

    def zone(self, local_tz: tzinfo) -> tzinfo:
        """The zone wall-clock fields are read in (``local`` → ``local_tz``)."""
        return zone_for(self.tz, local_tz)


def lower_when(schedule: Schedule) -> Trigger:
    """The trigger of ``schedule.when`` (exactly one shape is set, the model guarantees it)."""
    when = schedule.when
    if when.per_pc is not None:
        every = when.per_pc.every
        return ReconcileTrigger(per_pc_once() if every is None else per_pc_every(every))
    if when.per_target is not None:
        every = when.per_target.every
        return ReconcileTrigger(per_target_once() if every is None else per_target_every(every))
    if when.calendar is not None:
        cal = when.calendar
        return CalendarTrigger(at=cal.time_of_day, days=cal.day_specs, one_shot=cal.one_shot_date)
    assert when.cron is not None
    return CronTrigger(" ".join(when.cron.split()))


def lower(schedule: Schedule, *, reconcile_poll: timedelta = RECONCILE_POLL) -> Plan:
    """Lower a validated schedule to its :class:`Plan` (pure; no clock, no zone lookup of
    ``local``). ``reconcile_poll`` is how often a reconcile shape polls (the backend's is
    configurable, one minute unless set; tests shorten it)."""
    constraints = schedule.constraints
    retry = schedule.retry
    trigger = lower_when(schedule)
    if isinstance(trigger, ReconcileTrigger) and trigger.poll != reconcile_poll:
        trigger = ReconcileTrigger(trigger.mode, reconcile_poll)
    return Plan(
        schedule_id=schedule.id,
        trigger=trigger,
        tz=schedule.tz,
        enabled=schedule.enabled,
        runs_on=schedule.runs_on,
        active_from=None if schedule.active is None else schedule.active.from_,
        active_until=None if schedule.active is None else schedule.active.until,
        window=None if constraints is None else constraints.time_window,
        skip_dates=frozenset(() if constraints is None else constraints.skip_dates),
        starting_deadline=schedule.starting_deadline,
        catchup=schedule.catchup,
        jitter=schedule.jitter,
        retry_max=0 if retry is None else retry.max,
        retry_backoff=timedelta(0) if retry is None else retry.backoff,
    )


__all__ = [
    "RECONCILE_POLL",
    "CalendarTrigger",
    "CronTrigger",
    "DedupKind",
    "DedupMode",
    "Plan",
    "ReconcileTrigger",
    "Trigger",
    "lower",
    "lower_when",
    "per_pc_every",
    "per_pc_once",
    "per_target_every",
    "per_target_once",
]
