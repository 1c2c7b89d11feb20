"""Cron occurrences (5 fields, or 6 with seconds first) via cronsim, normalised to
kanade's DST rules.

What cronsim does on its own with an aware start time (cronsim 2.8):

* a 5-field expression whose minute *and* hour fields are fixed (``30 2 * * *``) is walked
  in naive wall-clock time (Debian cron style): a time in a spring-forward gap is moved to
  the first valid minute after it (02:30 → 03:00) and a repeated time fires once, with
  ``fold=0``. That matches our rule, except that when the start instant is in the
  *second* pass of a repeated hour it can return an instant *before* the start;
* every other expression (``0 * * * *``, ``*/15 * * * *``, any 6-field one) is walked by
  ticking UTC and reading the wall clock: times in a gap are silently dropped (no 02:30
  fire at all on a spring-forward day), and repeated times fire twice (01:00 EDT and
  01:00 EST).

Normalisation: we never hand cronsim a zone. It only enumerates *naive wall-clock* matches
(a pure calendar walk, no DST at all), and each match goes through
:func:`~.timezones.resolve_wall` like a calendar time: gap → the transition instant,
overlap → first occurrence. Several gap times resolve to the same instant (``*/15`` at
02:00, 02:15, 02:30, 02:45 and 03:00 on a New York spring-forward day are all 07:00 UTC);
callers only ever ask for instants strictly after the last one, so that instant fires
once. An hourly ``0 * * * *`` therefore fires at 01:00 EST and 03:00 EDT on spring-forward
day, and at 01:00 EDT then 02:00 EST on fall-back day (the repeated 01:00 EST does not
fire).
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
