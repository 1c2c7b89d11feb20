"""Schedule gates and the per-tick fire decision, :func:`decide_tick` (SPEC §2.2, §3.6,
§4.4), used by both schedulers.

The gates in order, each at the nominal time, and catch-up: docs/scheduling-core.md,
"Gates and the per-tick decision".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Final

from kanade.core.freeze import Freeze
from kanade.core.instants import format_instant
from kanade.core.scheduling.decisions import (
    QUIET_REASONS,
    Decision,
    Fire,
    Missed,
    Skip,
    SkipReason,
)
from kanade.core.scheduling.fires import fires_between, next_fire
from kanade.core.scheduling.lowering import Plan
from kanade.core.scheduling.occurrence import occurrence_id
from kanade.core.scheduling.timezones import local_date, local_time, resolve_wall, to_utc

DEFAULT_LATE_TOLERANCE: Final = timedelta(seconds=60)
"""A *live* scheduler's own lateness: an occurrence it was up for and decides within this
long after its nominal time is on time; a later decision means the process stalled (subject
to ``catchup``). It never covers an outage: see :func:`was_down_for`."""

MAX_LISTED_MISSED: Final = 1000

_TINY: Final = timedelta(microseconds=1)


def _bound(value: date | datetime | None, tz: tzinfo) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if value.tzinfo is None:
        return resolve_wall(value, tz)
    return to_utc(value)


def active_bounds(plan: Plan, local_tz: tzinfo) -> tuple[datetime | None, datetime | None]:
    """``active`` as UTC instants (naive values read in the plan's zone, DST rules applied)."""
    tz = plan.zone(local_tz)
    return _bound(plan.active_from, tz), _bound(plan.active_until, tz)



def gate_reason(
    plan: Plan,
    nominal: datetime,
    *,
    now: datetime,
    local_tz: tzinfo,
    freeze: Freeze | None = None,
) -> tuple[SkipReason, str] | None:
    """The first gate (enabled, active, window, skip_dates, freeze) that stops the occurrence
    at ``nominal``, as ``(reason, detail)``; None when it passes them all."""
    nominal = to_utc(nominal)
    tz = plan.zone(local_tz)
    if not plan.enabled:
        return "disabled", "schedule is disabled"
    start, end = active_bounds(plan, local_tz)
    if start is not None and nominal < start:
        return "inactive", f"dormant: active from {format_instant(start)}"
    if end is not None and nominal >= end:
        return "inactive", f"dormant: active until {format_instant(end)} (exclusive)"
    if plan.window is not None:
        wall = local_time(nominal, tz)
        if not plan.window.contains(wall):
            return "outside_window", f"{wall:%H:%M} is outside window {plan.window}"
    if plan.skip_dates:
        day = local_date(nominal, tz)
        if day in plan.skip_dates:
            return "skip_date", f"{day.isoformat()} is in skip_dates"
    if freeze is not None:
        if freeze.covers(nominal):
            return "frozen", f"nominal time is inside the {freeze.describe()}"
        if freeze.covers(now):
            return "frozen", f"now is inside the {freeze.describe()}"
    return None


def deadline_at(plan: Plan, nominal: datetime) -> datetime | None:
    """``nominal + starting_deadline`` (the command's ``deadline_at``), or None."""
    if plan.starting_deadline is None:
        return None
    return to_utc(nominal) + plan.starting_deadline


def deadline_passed(plan: Plan, nominal: datetime, now: datetime) -> bool:
    """``now > nominal + starting_deadline`` (exactly at the deadline still fires)."""
    limit = deadline_at(plan, nominal)
    return limit is not None and to_utc(now) > limit


def was_down_for(nominal: datetime, up_since: datetime | None) -> bool:
    """Whether the deciding scheduler was not up at ``nominal``: it came up (started, or
    took the lead) after that instant. ``up_since`` None means up throughout.

    An occurrence due while no scheduler was up is *missed*, however short the outage
    (``catchup: skip`` never runs it; ``catchup: once`` runs it as the catch-up): the
    late tolerance is for a live scheduler's own lateness only.
    """
    return up_since is not None and to_utc(nominal) < to_utc(up_since)


def _skip(plan: Plan, nominal: datetime, reason: SkipReason, detail: str, quiet: bool) -> Skip:
    return Skip(
        schedule_id=plan.schedule_id,
        nominal=nominal,
        occurrence_id=occurrence_id(plan.schedule_id, nominal),
        reason=reason,
        detail=detail,
        quiet=quiet or reason in QUIET_REASONS,
    )


def _fire(plan: Plan, nominal: datetime, now: datetime, caught_up: bool) -> Fire:
    return Fire(
        schedule_id=plan.schedule_id,
        nominal=nominal,
        occurrence_id=occurrence_id(plan.schedule_id, nominal),
        deadline_at=deadline_at(plan, nominal),
        late=now - nominal,
        caught_up=caught_up,
    )


@dataclass(frozen=True)
class TickOutcome:
    decisions: tuple[Decision, ...]
    """In nominal-time order: gate skips, then at most one :class:`Missed`, then the fire
    (or its deadline skip)."""
    last_tick: datetime
    """Persist this as the next call's ``last_tick`` (never moves backwards)."""
    next_fire: datetime | None
    """The next ungated fire after ``last_tick``: when to wake up next."""

    @property
    def fire(self) -> Fire | None:
        for decision in self.decisions:
            if isinstance(decision, Fire):
                return decision
        return None

    @property
    def skips(self) -> tuple[Skip, ...]:
        return tuple(d for d in self.decisions if isinstance(d, Skip))

    @property
    def missed(self) -> tuple[datetime, ...]:
        return tuple(n for d in self.decisions if isinstance(d, Missed) for n in d.nominals)


def decide_tick(
    plan: Plan,
    *,
    last_tick: datetime,
    now: datetime,
    local_tz: tzinfo,
    freeze: Freeze | None = None,
    late_tolerance: timedelta = DEFAULT_LATE_TOLERANCE,
    max_listed: int = MAX_LISTED_MISSED,
    up_since: datetime | None = None,
) -> TickOutcome:
    """Decide the occurrences of ``plan`` due in ``(last_tick, now]``.

    ``last_tick`` is the ``now`` of the previous decision (persisted by the caller; set it
    to the registration time for a new schedule, so nothing older ever fires). A clock
    stepped backwards yields nothing and keeps ``last_tick`` where it was.

    ``up_since`` is when the deciding scheduler came up (process start, or the start of
    its term as leader): an occurrence before it was due while nothing could fire it, so
    it is on time only if the scheduler was up at its nominal time *and* decides it within
    ``late_tolerance`` (:func:`was_down_for`). None: up throughout.
    """
    last_tick, now = to_utc(last_tick), to_utc(now)
    if now <= last_tick:
        return TickOutcome((), last_tick, next_fire(plan, last_tick, local_tz))
    span = fires_between(plan, last_tick, now, local_tz, limit=max_listed)
    upcoming = next_fire(plan, now, local_tz)
    due = list(span.fires)
    if span.latest is not None and (not due or due[-1] != span.latest):
        due.append(span.latest)
    if not due:
        return TickOutcome((), now, upcoming)

    if plan.is_reconcile:
        poll = due[-1]  # only the current poll matters; older polls are not "missed"
        gated = gate_reason(plan, poll, now=now, local_tz=local_tz, freeze=freeze)
        if gated is not None:
            return TickOutcome((_skip(plan, poll, *gated, quiet=True),), now, upcoming)
        return TickOutcome((_fire(plan, poll, now, caught_up=False),), now, upcoming)

    decisions: list[Decision] = []
    eligible: list[datetime] = []
    for nominal in due:
        gated = gate_reason(plan, nominal, now=now, local_tz=local_tz, freeze=freeze)
        if gated is None:
            eligible.append(nominal)
        else:
            decisions.append(_skip(plan, nominal, *gated, quiet=False))
    if not eligible:
        return TickOutcome(tuple(decisions), now, upcoming)

    latest, missed = eligible[-1], eligible[:-1]
    on_time = not was_down_for(latest, up_since) and now - latest <= late_tolerance
    final: Decision | None = None
    if not on_time and plan.catchup == "skip":
        missed.append(latest)
    elif deadline_passed(plan, latest, now):
        limit = deadline_at(plan, latest)
        assert limit is not None and plan.starting_deadline is not None
        final = _skip(
            plan,
            latest,
            "deadline_passed",
            f"starting deadline passed: {(now - limit).total_seconds():.3f}s late "
            f"(nominal {format_instant(latest)}, deadline {format_instant(limit)}, "
            f"now {format_instant(now)})",
            quiet=False,
        )
    else:
        final = _fire(plan, latest, now, caught_up=not on_time)
    if missed:
        decisions.append(Missed(plan.schedule_id, tuple(missed), more=span.truncated))
    if final is not None:
        decisions.append(final)
    return TickOutcome(tuple(decisions), now, upcoming)


def next_gated_fires(
    plan: Plan,
    after: datetime,
    local_tz: tzinfo,
    n: int,
    *,
    freeze: Freeze | None = None,
    max_scan: int = 10_000,
) -> list[datetime]:
    """The next ``n`` fires after ``after`` that pass gates 1-4 (for previews and "next
    fire" columns). Freeze is evaluated as if each were decided at its nominal time.
    Scans at most ``max_scan`` raw fires, so a schedule whose gates never open ends early."""
    out: list[datetime] = []
    cursor: datetime | None = to_utc(after)
    start, end = active_bounds(plan, local_tz)
    if start is not None and cursor is not None and cursor < start:
        cursor = start - _TINY  # dormant until then: jump instead of scanning
    for _ in range(max_scan):
        if end is not None and cursor is not None and cursor >= end:
            break
        if len(out) >= n or cursor is None:
            break
        cursor = next_fire(plan, cursor, local_tz)
        if cursor is None:
            break
        if gate_reason(plan, cursor, now=cursor, local_tz=local_tz, freeze=freeze) is None:
            out.append(cursor)
        elif freeze is not None and freeze.covers(cursor):
            # Frozen: nothing fires until the freeze ends, so jump there instead of
            # scanning every occurrence inside it (an open freeze never ends).
            if freeze.until is None:
                break
            cursor = max(cursor, freeze.until - _TINY)
    return out
