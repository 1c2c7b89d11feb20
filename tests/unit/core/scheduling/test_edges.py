"""Edges found in use: far-future cron walks and previews under a fleet freeze."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from kanade.core.scheduling import Freeze, lower, next_gated_fires
from kanade.core.scheduling.cron import cron_next, cron_prev
from kanade.core.validation import parse_schedule

UTC_TZ = ZoneInfo("UTC")


def _plan(cron: str) -> object:
    return lower(parse_schedule({"id": "s", "job_id": "j", "when": {"cron": cron},
                                 "target": {"all": True}, "tz": "utc"}))


def test_cron_walk_past_year_9999_ends_instead_of_crashing() -> None:
    late = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    assert cron_next("0 0 1 1 *", late, UTC_TZ) is None
    assert cron_prev("0 0 2 1 *", datetime(1, 1, 1, 12, tzinfo=UTC), UTC_TZ) is None


def test_preview_under_an_open_ended_freeze_is_empty_and_fast() -> None:
    plan = _plan("* * * * *")
    now = datetime(2026, 3, 1, tzinfo=UTC)
    t0 = time.perf_counter()
    fires = next_gated_fires(plan, now, UTC_TZ, 10, freeze=Freeze(from_=now))  # type: ignore[arg-type]
    assert fires == [] and time.perf_counter() - t0 < 1.0


def test_preview_jumps_over_a_bounded_freeze() -> None:
    plan = _plan("0 * * * *")
    now = datetime(2026, 3, 1, tzinfo=UTC)
    until = now + timedelta(days=30)
    fires = next_gated_fires(plan, now, UTC_TZ, 3, freeze=Freeze(from_=now, until=until))  # type: ignore[arg-type]
    assert fires == [until, until + timedelta(hours=1), until + timedelta(hours=2)]
