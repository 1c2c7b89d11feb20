"""local_zone: the one local-zone function of agent and backend (tzlocal, $TZ on Linux)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from kanade.core.scheduling.timezones import local_zone, resolve_wall, zone_for


@pytest.fixture
def set_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """``set_tz.setenv("TZ", …)``; local_zone is read once per process, so it is re-read
    for the test and again after it."""
    local_zone.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    local_zone.cache_clear()


def test_local_zone_is_the_iana_zone_of_tz(set_tz: pytest.MonkeyPatch) -> None:
    set_tz.setenv("TZ", "America/New_York")
    zone = local_zone()
    assert zone == ZoneInfo("America/New_York")
    # DST-aware, unlike a fixed offset: winter and summer offsets differ.
    winter = datetime(2026, 1, 15, 12, tzinfo=zone).utcoffset()
    summer = datetime(2026, 7, 15, 12, tzinfo=zone).utcoffset()
    assert winter != summer


def test_local_zone_accepts_the_colon_form(set_tz: pytest.MonkeyPatch) -> None:
    set_tz.setenv("TZ", ":Europe/Paris")
    assert local_zone() == ZoneInfo("Europe/Paris")


def test_local_zone_falls_back_to_utc_for_a_bogus_tz(set_tz: pytest.MonkeyPatch) -> None:
    set_tz.setenv("TZ", "Nowhere/Bogus")
    assert local_zone() == ZoneInfo("UTC")


def test_tz_local_schedules_follow_dst(set_tz: pytest.MonkeyPatch) -> None:
    set_tz.setenv("TZ", "America/New_York")
    zone = zone_for("local", local_zone())
    assert resolve_wall(datetime(2026, 1, 15, 9), zone) == datetime(2026, 1, 15, 14, tzinfo=UTC)
    assert resolve_wall(datetime(2026, 7, 15, 9), zone) == datetime(2026, 7, 15, 13, tzinfo=UTC)
