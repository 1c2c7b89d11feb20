"""The one time module: ISO-8601 "Z" text, strict parsing, UTC normalisation, the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from kanade.core.instants import (
    as_utc,
    format_instant,
    format_local,
    format_optional,
    parse_instant,
    system_clock,
    to_utc,
)

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PLUS_2 = timezone(timedelta(hours=2))


def test_format_is_utc_with_z() -> None:
    assert format_instant(T) == "2026-03-01T12:00:00Z"
    assert format_instant(T.astimezone(PLUS_2)) == "2026-03-01T12:00:00Z"
    assert format_instant(T.replace(microsecond=5)) == "2026-03-01T12:00:00.000005Z"
    assert format_instant(datetime(2026, 3, 1, 12)) == "2026-03-01T12:00:00Z"  # naive: UTC
    assert format_optional(None) is None and format_optional(T) == "2026-03-01T12:00:00Z"


def test_parse_round_trips_and_normalises() -> None:
    assert parse_instant(format_instant(T)) == T
    got = parse_instant("2026-03-01T14:00:00+02:00")
    assert got == T and got.tzinfo is UTC
    assert parse_instant(" 2026-03-01 12:00 ") == T  # no offset: UTC
    assert parse_instant("2026-03-01T12:00:00Z", require_offset=True) == T


@pytest.mark.parametrize("bad", ["yesterday", "", 12, None, "2026-03-01T12:00:00Z" + " " * 60])
def test_parse_is_strict(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_instant(bad)


def test_parse_can_require_an_offset() -> None:
    with pytest.raises(ValueError):
        parse_instant("2026-03-01T12:00:00", require_offset=True)


def test_normalisers() -> None:
    assert as_utc(datetime(2026, 3, 1, 12)) == T
    assert as_utc(T.astimezone(PLUS_2)).tzinfo is UTC
    assert to_utc(T.astimezone(PLUS_2)) == T and to_utc(T).tzinfo is UTC
    with pytest.raises(ValueError):
        to_utc(datetime(2026, 3, 1, 12))


def test_system_clock_is_aware_utc() -> None:
    assert system_clock().tzinfo is UTC


def test_format_local_keeps_the_zone_offset() -> None:
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    assert format_local(T, paris) == "2026-03-01T13:00:00+01:00"
    assert format_local(datetime(2026, 7, 1, 12, tzinfo=UTC), paris) == "2026-07-01T14:00:00+02:00"
    with pytest.raises(ValueError):
        format_local(datetime(2026, 3, 1, 12), paris)
