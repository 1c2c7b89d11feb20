"""Cron occurrences (5 fields, or 6 with seconds first) via cronsim, normalised to
kanade's DST rules.

What cronsim does on its own and what is corrected: docs/scheduling-core.md, "Cron and
cronsim".
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Final

from cronsim import CronSim, CronSimError

from kanade.core.scheduling.timezones import (
    floor_second,
    in_second_pass,
    resolve_wall,
    to_utc,
    wall_of,
)

MAX_STEPS: Final = 20_000
"""Matches examined per call. Only wall times that resolve to or before the start are
skipped, which is bounded by the length of a DST overlap (at most 2 h of per-second
matches); reaching the cap means "no occurrence"."""

_SECOND: Final = timedelta(seconds=1)


def _walk(expr: str, start: datetime, *, reverse: bool) -> CronSim | None:
    try:
        return CronSim(expr, start, reverse=reverse)
    except (CronSimError, OverflowError, ValueError):
        return None


def cron_next(expr: str, after: datetime, tz: tzinfo) -> datetime | None:
    """The first occurrence of ``expr`` in ``tz`` strictly after ``after`` (UTC), or None."""
    after = to_utc(after)
    sim = _walk(expr, wall_of(after, tz), reverse=False)  # yields walls > wall(after)
    if sim is None:
        return None
    for _ in range(MAX_STEPS):
        try:
            wall = next(sim)
        except StopIteration:  # cronsim gives up after 50 years without a match
            return None
        except (OverflowError, ValueError):  # walked past year 9999: there is no next
            return None
        instant = resolve_wall(wall, tz)
        if instant > after:
            return instant
    return None


def cron_prev(expr: str, at_or_before: datetime, tz: tzinfo) -> datetime | None:
    """The last occurrence of ``expr`` in ``tz`` at or before ``at_or_before`` (UTC)."""
    before = to_utc(at_or_before)
    # Walls after wall(before) still resolve at or before it when ``before`` is in the
    # second pass of a repeated hour: start the backward walk an overlap later.
    overlap = in_second_pass(before, tz) or timedelta(0)
    start = floor_second(wall_of(before, tz)) + _SECOND + overlap
    sim = _walk(expr, start, reverse=True)  # yields walls <= start - 1s
    if sim is None:
        return None
    for _ in range(MAX_STEPS):
        try:
            wall = next(sim)
        except (StopIteration, OverflowError, ValueError):  # no earlier occurrence
            return None
        instant = resolve_wall(wall, tz)
        if instant <= before:
            return instant
    return None
