"""Fire times of a plan: next / previous / between, as UTC instants.

Arithmetic is on UTC instants; wall-clock fields are read in the plan's zone
(``tz: local`` = the ``local_tz`` the caller passes, so results are deterministic). The DST
rules are those of :mod:`.timezones` (gap → first valid instant after; overlap → first
occurrence), applied identically to calendar and cron (:mod:`.calendar`, :mod:`.cron`).

Reconcile plans (``per_pc`` / ``per_target``) "fire" on every UTC minute boundary: that is
the poll at which :mod:`.dedup` decides which pcs to run.

These functions ignore the gates (``active``, ``window``, ``skip_dates``, freeze, deadline):
:mod:`.gates` applies them to the raw fire times produced here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final

from kanade.core.scheduling.calendar import calendar_next, calendar_prev
from kanade.core.scheduling.cron import cron_next, cron_prev
from kanade.core.scheduling.lowering import (
    CalendarTrigger,
    Plan,
    ReconcileTrigger,
)
from kanade.core.scheduling.timezones import resolve_wall, to_utc

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _floor_to(moment: datetime, step: timedelta) -> datetime:
    return _EPOCH + ((moment - _EPOCH) // step) * step


def next_fire(plan: Plan, after: datetime, local_tz: tzinfo) -> datetime | None:
    """The first (ungated) fire of ``plan`` strictly after ``after``, in UTC; None when
    there is none (a one-shot at or before ``after``, an impossible cron)."""
    after = to_utc(after)
    trigger = plan.trigger
    if isinstance(trigger, ReconcileTrigger):
        return _floor_to(after, trigger.poll) + trigger.poll
    tz = plan.zone(local_tz)
    if isinstance(trigger, CalendarTrigger):
        return calendar_next(trigger, after, tz)
    return cron_next(trigger.expr, after, tz)


def prev_fire(plan: Plan, at_or_before: datetime, local_tz: tzinfo) -> datetime | None:
    """The last (ungated) fire of ``plan`` at or before ``at_or_before``, in UTC."""
    before = to_utc(at_or_before)
    trigger = plan.trigger
    if isinstance(trigger, ReconcileTrigger):
        return _floor_to(before, trigger.poll)
    tz = plan.zone(local_tz)
    if isinstance(trigger, CalendarTrigger):
        return calendar_prev(trigger, before, tz)
    return cron_prev(trigger.expr, before, tz)


def iter_fires(plan: Plan, after: datetime, local_tz: tzinfo) -> Iterator[datetime]:
    """Successive fires strictly after ``after`` (strictly increasing; may be endless)."""
    cursor: datetime | None = to_utc(after)
    while cursor is not None:
        cursor = next_fire(plan, cursor, local_tz)
        if cursor is not None:
            yield cursor


def next_fires(plan: Plan, after: datetime, local_tz: tzinfo, n: int) -> list[datetime]:
    """The next ``n`` fires strictly after ``after`` (fewer when the plan runs out)."""
    out: list[datetime] = []
    if n <= 0:
        return out
    for fire in iter_fires(plan, after, local_tz):
        out.append(fire)
        if len(out) >= n:
            break
    return out


@dataclass(frozen=True)
class FireSpan:
    """Fires in ``(start, end]``: the first ``limit`` of them, whether more were left out,
    and the last one (found even when the list is truncated)."""

    fires: tuple[datetime, ...]
    truncated: bool
    latest: datetime | None


def fires_between(
    plan: Plan, start: datetime, end: datetime, local_tz: tzinfo, *, limit: int = 1000
) -> FireSpan:
    """Fires strictly after ``start`` and at or before ``end``."""
    start, end = to_utc(start), to_utc(end)
    found: list[datetime] = []
    truncated = False
    if end > start:
        for fire in iter_fires(plan, start, local_tz):
            if fire > end:
                break
            if len(found) >= limit:
                truncated = True
                break
            found.append(fire)
    latest = found[-1] if found else None
    if truncated:
        latest = prev_fire(plan, end, local_tz)
    return FireSpan(tuple(found), truncated, latest)


def one_shot_instant(plan: Plan, local_tz: tzinfo) -> datetime | None:
    """The instant of a dated one-shot (DST rules applied); None for any other plan."""
    trigger = plan.trigger
    if not isinstance(trigger, CalendarTrigger) or trigger.one_shot is None:
        return None
    return resolve_wall(datetime.combine(trigger.one_shot, trigger.at), plan.zone(local_tz))


def is_past_one_shot(plan: Plan, now: datetime, local_tz: tzinfo) -> bool:
    """A dated one-shot whose time is at or before ``now``: it will never fire (warn)."""
    only = one_shot_instant(plan, local_tz)
    return only is not None and only <= to_utc(now)


__all__ = [
    "FireSpan",
    "fires_between",
    "is_past_one_shot",
    "iter_fires",
    "next_fire",
    "next_fires",
    "one_shot_instant",
    "prev_fire",
]
