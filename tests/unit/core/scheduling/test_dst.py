"""Next-fire tables across DST transitions (SPEC §4.4) for calendar and cron.

Rules under test: a wall-clock time that does not exist (spring forward) fires at the first
valid instant after it (the transition instant); a repeated time (fall back) fires once, at
its first occurrence. Zones: America/New_York, Europe/Berlin, Australia/Sydney (southern
hemisphere: DST ends in April, starts in October), Asia/Kolkata (+05:30, no DST), UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from kanade.core.scheduling import (
    CalendarTrigger,
    CronTrigger,
    Plan,
    next_fire,
    next_fires,
    prev_fire,
    resolve_wall,
)
from kanade.core.scheduling.timezones import in_second_pass, is_ambiguous, is_nonexistent

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
SYDNEY = ZoneInfo("Australia/Sydney")
KOLKATA = ZoneInfo("Asia/Kolkata")
FAR = ZoneInfo("Pacific/Kiritimati")  # the "local" zone when a test must not use it


def Z(text: str) -> datetime:
    """An ISO UTC instant: Z("2025-03-09T07:00")."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def cal(at: str, tz: str, **kw: object) -> Plan:
    hh, mm = (int(x) for x in at.split(":"))
    return Plan("s", CalendarTrigger(time(hh, mm), **kw), tz=tz)  # type: ignore[arg-type]


def cron(expr: str, tz: str) -> Plan:
    return Plan("s", CronTrigger(expr), tz=tz)


def midnight_utc(day: date, tz: tzinfo) -> datetime:
    return resolve_wall(datetime.combine(day, time()), tz)


# (zone, transition day, local "HH:MM", expected UTC of that day's fire, kind)
DAILY_TABLE = [
    # America/New_York: 2025-03-09 02:00 EST → 03:00 EDT; 2025-11-02 02:00 EDT → 01:00 EST
    ("America/New_York", date(2025, 3, 9), "02:30", "2025-03-09T07:00", "gap"),
    ("America/New_York", date(2025, 3, 9), "02:00", "2025-03-09T07:00", "gap"),
    ("America/New_York", date(2025, 3, 9), "02:59", "2025-03-09T07:00", "gap"),
    ("America/New_York", date(2025, 3, 9), "03:00", "2025-03-09T07:00", "normal"),
    ("America/New_York", date(2025, 3, 9), "01:59", "2025-03-09T06:59", "normal"),
    ("America/New_York", date(2025, 3, 9), "12:00", "2025-03-09T16:00", "normal"),
    ("America/New_York", date(2025, 11, 2), "01:30", "2025-11-02T05:30", "overlap"),
    ("America/New_York", date(2025, 11, 2), "01:00", "2025-11-02T05:00", "overlap"),
    ("America/New_York", date(2025, 11, 2), "02:00", "2025-11-02T07:00", "normal"),
    ("America/New_York", date(2025, 11, 2), "00:59", "2025-11-02T04:59", "normal"),
    ("America/New_York", date(2025, 11, 2), "12:00", "2025-11-02T17:00", "normal"),
    # Europe/Berlin: 2025-03-30 02:00 CET → 03:00 CEST; 2025-10-26 03:00 CEST → 02:00 CET
    ("Europe/Berlin", date(2025, 3, 30), "02:30", "2025-03-30T01:00", "gap"),
    ("Europe/Berlin", date(2025, 3, 30), "12:00", "2025-03-30T10:00", "normal"),
    ("Europe/Berlin", date(2025, 3, 30), "01:30", "2025-03-30T00:30", "normal"),
    ("Europe/Berlin", date(2025, 10, 26), "02:30", "2025-10-26T00:30", "overlap"),
    ("Europe/Berlin", date(2025, 10, 26), "03:00", "2025-10-26T02:00", "normal"),
    ("Europe/Berlin", date(2025, 10, 26), "12:00", "2025-10-26T11:00", "normal"),
    # Australia/Sydney: DST ends 2025-04-06 03:00 AEDT → 02:00 AEST (overlap in April);
    # starts 2025-10-05 02:00 AEST → 03:00 AEDT (gap in October).
    ("Australia/Sydney", date(2025, 4, 6), "02:30", "2025-04-05T15:30", "overlap"),
    ("Australia/Sydney", date(2025, 4, 6), "12:00", "2025-04-06T02:00", "normal"),
    ("Australia/Sydney", date(2025, 10, 5), "02:30", "2025-10-04T16:00", "gap"),
    ("Australia/Sydney", date(2025, 10, 5), "12:00", "2025-10-05T01:00", "normal"),
    # Asia/Kolkata: +05:30 all year, on the New York / Berlin transition days too.
    ("Asia/Kolkata", date(2025, 3, 9), "02:30", "2025-03-08T21:00", "normal"),
    ("Asia/Kolkata", date(2025, 10, 26), "02:30", "2025-10-25T21:00", "normal"),
    ("Asia/Kolkata", date(2025, 11, 2), "00:15", "2025-11-01T18:45", "normal"),
    # UTC
    ("utc", date(2025, 3, 9), "02:30", "2025-03-09T02:30", "normal"),
    ("utc", date(2025, 10, 26), "02:30", "2025-10-26T02:30", "normal"),
]


def _zone(name: str) -> tzinfo:
    return UTC if name == "utc" else ZoneInfo(name)


@pytest.mark.parametrize(("tz", "day", "at", "expected", "kind"), DAILY_TABLE)
@pytest.mark.parametrize("shape", ["calendar", "cron5", "cron6"])
def test_daily_fire_on_transition_days(
    tz: str, day: date, at: str, expected: str, kind: str, shape: str
) -> None:
    zone = _zone(tz)
    hh, mm = at.split(":")
    plan = {
        "calendar": cal(at, tz),
        "cron5": cron(f"{int(mm)} {int(hh)} * * *", tz),
        "cron6": cron(f"0 {int(mm)} {int(hh)} * * *", tz),
    }[shape]
    wall = datetime.combine(day, time(int(hh), int(mm)))
    assert is_nonexistent(wall, zone) == (kind == "gap")
    assert is_ambiguous(wall, zone) == (kind == "overlap")

    start = midnight_utc(day, zone)
    first = next_fire(plan, start, FAR)
    assert first == Z(expected)
    # once per day: the next fire is the next day's ordinary time, never a second pass
    second = next_fire(plan, first, FAR)
    assert second is not None
    assert second.astimezone(zone).date() == day + timedelta(days=1)
    assert second.astimezone(zone).time() == wall.time()
    # and prev_fire agrees with next_fire
    assert prev_fire(plan, first, FAR) == first
    assert prev_fire(plan, first - timedelta(microseconds=1), FAR) != first


@pytest.mark.parametrize("shape", ["calendar", "cron"])
def test_gap_fire_reads_0300_local(shape: str) -> None:
    plan = (
        cal("02:30", "America/New_York")
        if shape == "calendar"
        else cron("30 2 * * *", "America/New_York")
    )
    fire = next_fire(plan, Z("2025-03-08T12:00"), FAR)
    assert fire is not None
    local = fire.astimezone(NY)
    assert (local.hour, local.minute, local.utcoffset()) == (3, 0, timedelta(hours=-4))


@pytest.mark.parametrize("shape", ["calendar", "cron"])
def test_overlap_second_pass_never_fires(shape: str) -> None:
    plan = (
        cal("01:30", "America/New_York")
        if shape == "calendar"
        else cron("30 1 * * *", "America/New_York")
    )
    # 06:10Z is 01:10 EST, in the second pass of the repeated hour: the 01:30 EST that
    # follows is a repeat, so the next fire is the next day.
    assert in_second_pass(Z("2025-11-02T06:10"), NY) == timedelta(hours=1)
    assert next_fire(plan, Z("2025-11-02T06:10"), FAR) == Z("2025-11-03T06:30")
    # and looking back from the second pass finds the first-pass occurrence
    assert prev_fire(plan, Z("2025-11-02T06:10"), FAR) == Z("2025-11-02T05:30")


def _fires(plan: Plan, after: str, n: int, zone: tzinfo) -> list[str]:
    return [f"{f.astimezone(zone):%H:%M%z}" for f in next_fires(plan, Z(after), FAR, n)]


# (zone, expr, after (UTC), expected local "HH:MM+zzzz" fires)
CRON_TABLE = [
    # hourly across New York spring forward: 02:00 does not exist → 03:00, fired once
    (
        "America/New_York",
        "0 * * * *",
        "2025-03-09T05:30",
        ["01:00-0500", "03:00-0400", "04:00-0400"],
    ),
    # every 30 min: 02:00 and 02:30 both resolve to 03:00, which fires once
    (
        "America/New_York",
        "*/30 * * * *",
        "2025-03-09T05:40",
        ["01:00-0500", "01:30-0500", "03:00-0400", "03:30-0400"],
    ),
    # hourly across fall back: the repeated 01:00 fires once (EDT), then 02:00 EST
    (
        "America/New_York",
        "0 * * * *",
        "2025-11-02T03:30",
        ["00:00-0400", "01:00-0400", "02:00-0500", "03:00-0500"],
    ),
    (
        "America/New_York",
        "*/30 * * * *",
        "2025-11-02T04:40",
        ["01:00-0400", "01:30-0400", "02:00-0500", "02:30-0500"],
    ),
    # Berlin
    ("Europe/Berlin", "0 * * * *", "2025-03-30T00:30", ["03:00+0200", "04:00+0200"]),
    ("Europe/Berlin", "0 * * * *", "2025-10-25T23:30", ["02:00+0200", "03:00+0100", "04:00+0100"]),
    # Sydney: April overlap (02:xx repeated), October gap (02:xx missing)
    (
        "Australia/Sydney",
        "0 * * * *",
        "2025-04-05T14:30",
        ["02:00+1100", "03:00+1000", "04:00+1000"],
    ),
    (
        "Australia/Sydney",
        "0 * * * *",
        "2025-10-04T14:30",
        ["01:00+1000", "03:00+1100", "04:00+1100"],
    ),
    ("Australia/Sydney", "15,45 2 * * *", "2025-10-04T14:30", ["03:00+1100", "02:15+1100"]),
    # Kolkata and UTC: nothing special ever
    ("Asia/Kolkata", "0 * * * *", "2025-03-08T20:00", ["02:00+0530", "03:00+0530", "04:00+0530"]),
    ("Asia/Kolkata", "30 * * * *", "2025-03-08T20:00", ["02:30+0530", "03:30+0530"]),
    ("utc", "0 * * * *", "2025-03-09T01:30", ["02:00+0000", "03:00+0000"]),
    # six fields (seconds first): same rules (01:00:30 EDT on fall-back day, then the
    # next day's 01:00:30 EST)
    ("America/New_York", "0 30 2 * * *", "2025-03-08T12:00", ["03:00-0400", "02:30-0400"]),
    ("America/New_York", "30 0 1 * * *", "2025-11-01T12:00", ["01:00-0400", "01:00-0500"]),
]


@pytest.mark.parametrize(("tz", "expr", "after", "expected"), CRON_TABLE)
def test_cron_across_transitions(tz: str, expr: str, after: str, expected: list[str]) -> None:
    assert _fires(cron(expr, tz), after, len(expected), _zone(tz)) == expected


def test_cron_six_fields_fall_back_dates() -> None:
    fires = next_fires(cron("30 0 1 * * *", "America/New_York"), Z("2025-11-01T12:00"), FAR, 2)
    assert fires == [Z("2025-11-02T05:00:30"), Z("2025-11-03T06:00:30")]


def test_cron_every_second_through_gap_collapses_to_transition() -> None:
    plan = cron("* * * * * *", "America/New_York")
    fires = next_fires(plan, Z("2025-03-09T06:59:58"), FAR, 4)
    # 01:59:59 EST, then every 02:xx:xx resolves to 07:00:00Z (fired once), then 03:00:01
    assert fires == [
        Z("2025-03-09T06:59:59"),
        Z("2025-03-09T07:00:00"),
        Z("2025-03-09T07:00:01"),
        Z("2025-03-09T07:00:02"),
    ]


def test_cron_every_minute_through_overlap_skips_second_pass() -> None:
    plan = cron("* * * * *", "America/New_York")
    fires = next_fires(plan, Z("2025-11-02T05:58"), FAR, 3)
    # 01:59 EDT, then the whole repeated hour is skipped, then 01:00 EST... is a repeat:
    # the next new wall time is 02:00 EST.
    assert fires == [Z("2025-11-02T05:59"), Z("2025-11-02T07:00"), Z("2025-11-02T07:01")]
    # asked from inside the second pass, the next fire is still 02:00 EST
    assert next_fire(plan, Z("2025-11-02T06:30"), FAR) == Z("2025-11-02T07:00")
    assert prev_fire(plan, Z("2025-11-02T06:30"), FAR) == Z("2025-11-02T05:59")


def test_local_means_the_callers_zone() -> None:
    plan = cal("02:30", "local")
    assert next_fire(plan, Z("2025-03-08T12:00"), NY) == Z("2025-03-09T07:00")
    assert next_fire(plan, Z("2025-03-08T12:00"), KOLKATA) == Z("2025-03-08T21:00")
    assert next_fire(plan, Z("2025-03-08T12:00"), UTC) == Z("2025-03-09T02:30")
    # an explicit zone ignores the caller's
    assert next_fire(cal("02:30", "Asia/Kolkata"), Z("2025-03-08T12:00"), NY) == Z(
        "2025-03-08T21:00"
    )


def test_resolve_wall_rules() -> None:
    assert resolve_wall(datetime(2025, 3, 9, 2, 30), NY) == Z("2025-03-09T07:00")
    assert resolve_wall(datetime(2025, 3, 9, 2, 0), NY) == Z("2025-03-09T07:00")
    assert resolve_wall(datetime(2025, 3, 9, 3, 0), NY) == Z("2025-03-09T07:00")
    assert resolve_wall(datetime(2025, 11, 2, 1, 30), NY) == Z("2025-11-02T05:30")
    assert resolve_wall(datetime(2025, 11, 2, 1, 30, fold=1), NY) == Z("2025-11-02T05:30")
    # a whole skipped day (Samoa, 2011-12-30) resolves to the first instant after it
    apia = ZoneInfo("Pacific/Apia")
    assert resolve_wall(datetime(2011, 12, 30, 12, 0), apia) == resolve_wall(
        datetime(2011, 12, 31, 0, 0), apia
    )
    with pytest.raises(ValueError):
        resolve_wall(Z("2025-01-01T00:00"), NY)


def test_cronsim_native_behaviour_is_what_we_normalise() -> None:
    """Pins what cronsim 2.8 does with aware datetimes, which our cron module avoids (it
    only ever gives cronsim naive wall-clock times). If cronsim changes, re-read cron.py."""
    start = datetime(2025, 3, 9, 0, 30, tzinfo=NY)
    # fixed minute+hour, 5 fields: gap time moved to 03:00 (same as our rule)
    assert next(CronSim("30 2 * * *", start)) == datetime(2025, 3, 9, 3, 0, tzinfo=NY)
    # 6 fields: the gap time is dropped altogether (we fire at 03:00 instead)
    got = next(CronSim("0 30 2 * * *", start))
    assert got.date() == date(2025, 3, 10)
    # "0 * * * *": 02:00 dropped (we resolve it to 03:00 and fire 03:00 once: same fires)
    it = CronSim("0 * * * *", start)
    assert [next(it).astimezone(UTC) for _ in range(2)] == [
        Z("2025-03-09T06:00"),
        Z("2025-03-09T07:00"),
    ]
    # fall back, hour field "*": the repeated 01:00 fires twice (we fire it once)
    it = CronSim("0 * * * *", datetime(2025, 11, 2, 0, 30, tzinfo=NY))
    assert [next(it).astimezone(UTC) for _ in range(3)] == [
        Z("2025-11-02T05:00"),
        Z("2025-11-02T06:00"),
        Z("2025-11-02T07:00"),
    ]
    # started in the second pass, a fixed-time expression returns an instant *before* the
    # start (we never do: next_fire is strictly after `after`)
    second_pass = Z("2025-11-02T06:10").astimezone(NY)
    assert next(CronSim("30 1 * * *", second_pass)).astimezone(UTC) == Z("2025-11-02T05:30")


def test_impossible_cron_has_no_fire() -> None:
    # Feb 30 never exists; cronsim refuses it at parse time → no fire, no exception
    assert next_fire(cron("0 0 30 2 *", "utc"), Z("2025-01-01T00:00"), FAR) is None
    assert prev_fire(cron("0 0 30 2 *", "utc"), Z("2025-01-01T00:00"), FAR) is None
