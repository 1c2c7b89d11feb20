"""Wall-clock ↔ instant conversion with kanade's DST rules (SPEC §4.4), and
:func:`local_zone`, the IANA zone ``tz: local`` means on this machine.

Gap → first valid instant after; overlap → first occurrence: docs/scheduling-core.md,
"Wall clock → instant: the DST rules".
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kanade.core.instants import to_utc


@cache
def local_zone() -> ZoneInfo:
    """This machine's zone as an IANA zone, for ``tz: local`` schedules (agent and backend).

    ``$TZ`` when set, else the system setting (``/etc/localtime`` on Unix, the registry on
    Windows, mapped to its IANA name), read by ``tzlocal``. Read once per process (a zone
    change needs a restart; ``local_zone.cache_clear()`` in tests). A machine whose zone
    cannot be named (e.g. a bogus ``$TZ``) falls back to UTC.
    """
    import tzlocal  # not at import: reads the system setting, and only schedulers need it

    try:
        return tzlocal.reload_localzone()
    except (ZoneInfoNotFoundError, ValueError, OSError, LookupError):
        return ZoneInfo("UTC")


def zone_for(tz_name: str, local_tz: tzinfo) -> tzinfo:
    """The zone a schedule's ``tz`` field means: ``local`` → ``local_tz``, ``utc`` → UTC,
    otherwise the IANA zone."""
    if tz_name == "local":
        return local_tz
    if tz_name == "utc":
        return UTC
    return ZoneInfo(tz_name)


def zone_name(tz: tzinfo) -> str:
    """A display name for ``tz`` (IANA key when known)."""
    key = getattr(tz, "key", None)
    if isinstance(key, str):
        return key
    return "UTC" if tz is UTC else str(tz)


def is_nonexistent(wall: datetime, tz: tzinfo) -> bool:
    """Whether the naive wall-clock time ``wall`` is skipped in ``tz`` (a DST gap)."""
    probe = wall.replace(tzinfo=tz, fold=0)
    return probe.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall.replace(fold=0)


def is_ambiguous(wall: datetime, tz: tzinfo) -> bool:
    """Whether the naive wall-clock time ``wall`` happens twice in ``tz`` (a DST overlap)."""
    if is_nonexistent(wall, tz):
        return False
    first = wall.replace(tzinfo=tz, fold=0).utcoffset()
    second = wall.replace(tzinfo=tz, fold=1).utcoffset()
    return first != second


def resolve_wall(wall: datetime, tz: tzinfo) -> datetime:
    """The UTC instant of the naive wall-clock time ``wall`` in ``tz``, by the rules above.

    Gap → the transition instant (the first valid instant after ``wall``); overlap → the
    first occurrence. Always returns an aware UTC datetime.
    """
    if wall.tzinfo is not None:
        raise ValueError("resolve_wall takes a naive wall-clock time")
    wall = wall.replace(fold=0)
    first = wall.replace(tzinfo=tz).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first  # exists; fold=0 is the first occurrence when repeated
    # In a gap. The fold=1 reading (new offset) lands before the gap, the fold=0 reading
    # (old offset) after it; the transition is between them. Binary-search the first
    # instant (to the microsecond) whose wall-clock reading is past ``wall``.
    lo = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    hi = first
    if lo > hi:  # defensive: a zone with inverted fold semantics
        lo, hi = hi, lo
    step = timedelta(microseconds=1)
    while hi - lo > step:
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).replace(tzinfo=None) > wall:
            hi = mid
        else:
            lo = mid
    return hi


def wall_of(instant: datetime, tz: tzinfo) -> datetime:
    """The naive wall-clock reading of an aware ``instant`` in ``tz`` (fold dropped)."""
    return to_utc(instant).astimezone(tz).replace(tzinfo=None, fold=0)


def local_date(instant: datetime, tz: tzinfo) -> date:
    """The date in ``tz`` at ``instant``."""
    return to_utc(instant).astimezone(tz).date()


def local_time(instant: datetime, tz: tzinfo) -> time:
    """The wall-clock time of day in ``tz`` at ``instant``."""
    return to_utc(instant).astimezone(tz).time()


def in_second_pass(instant: datetime, tz: tzinfo) -> timedelta | None:
    """If ``instant`` is in the *second* pass of a repeated (fall-back) period in ``tz``,
    the length of the overlap; else None. Wall-clock times read at such an instant
    resolve (first occurrence) to instants *before* it."""
    local = to_utc(instant).astimezone(tz)
    wall = local.replace(tzinfo=None, fold=0)
    if not is_ambiguous(wall, tz):
        return None
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first == to_utc(instant):
        return None
    off0 = wall.replace(tzinfo=tz, fold=0).utcoffset()
    off1 = wall.replace(tzinfo=tz, fold=1).utcoffset()
    assert off0 is not None and off1 is not None
    return abs(off0 - off1)


def floor_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


__all__ = [
    "floor_second",
    "in_second_pass",
    "is_ambiguous",
    "is_nonexistent",
    "local_date",
    "local_time",
    "local_zone",
    "resolve_wall",
    "to_utc",
    "wall_of",
    "zone_for",
    "zone_name",
]
