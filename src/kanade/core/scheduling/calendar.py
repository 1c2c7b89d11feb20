"""Calendar occurrences: ``at`` on ``days`` (``mon``, ``mon-fri``, ``tue#2``, ``friL``) or a
dated one-shot, as UTC instants.

Each day in the schedule's zone that the day rules match has one wall-clock occurrence at
``at``; it becomes an instant through :func:`~.timezones.resolve_wall`, so an ``at`` that
falls in a spring-forward gap fires at the transition instant (02:30 → 03:00 in
America/New_York) and one in a fall-back overlap fires once, at its first occurrence.
The wall-clock → instant mapping is non-decreasing, which is what lets the scans below
stop at the first match.

A dated one-shot (``at: "YYYY-MM-DD HH:MM"``) has exactly one occurrence; once that instant
is at or before ``after`` it never fires again.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Final

from kanade.core.scheduling.lowering import CalendarTrigger
from kanade.core.scheduling.timezones import local_date, resolve_wall, to_utc

MAX_SCAN_DAYS: Final = 3 * 366
"""How far to look for a matching day. Any weekday rule (``mon#5`` is the sparsest) has an
occurrence within a few months; beyond this there is none (only a one-shot gets there)."""

_DAY: Final = timedelta(days=1)


def calendar_next(trigger: CalendarTrigger, after: datetime, tz: tzinfo) -> datetime | None:
    """The first occurrence strictly after ``after`` (UTC), or None."""
    after = to_utc(after)
    if trigger.one_shot is not None:
        only = resolve_wall(datetime.combine(trigger.one_shot, trigger.at), tz)
        return only if only > after else None
    # Start a day early: a wall time on the previous local date can still resolve after
    # ``after`` when a gap pushes it forward.
    day = local_date(after, tz) - _DAY
    for _ in range(MAX_SCAN_DAYS):
        if trigger.fires_on(day):
            instant = resolve_wall(datetime.combine(day, trigger.at), tz)
            if instant > after:
                return instant
        day += _DAY
    return None


def calendar_prev(trigger: CalendarTrigger, at_or_before: datetime, tz: tzinfo) -> datetime | None:
    """The last occurrence at or before ``at_or_before`` (UTC), or None."""
    before = to_utc(at_or_before)
    if trigger.one_shot is not None:
        only = resolve_wall(datetime.combine(trigger.one_shot, trigger.at), tz)
        return only if only <= before else None
    day = local_date(before, tz) + _DAY
    for _ in range(MAX_SCAN_DAYS):
        if trigger.fires_on(day):
            instant = resolve_wall(datetime.combine(day, trigger.at), tz)
            if instant <= before:
                return instant
        day -= _DAY
    return None
