"""Lowering every ``when`` shape (SPEC §4.4) and the calendar day rules / one-shots."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kanade.core.models.when import DaySpec
from kanade.core.scheduling import (
    RECONCILE_POLL,
    CalendarTrigger,
    CronTrigger,
    DedupMode,
    Plan,
    ReconcileTrigger,
    is_past_one_shot,
    lower,
    next_fire,
    next_fires,
    one_shot_instant,
    prev_fire,
)
from kanade.core.validation import parse_schedule

FAR = ZoneInfo("Pacific/Kiritimati")


def Z(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def schedule(when: dict[str, Any], **extra: Any) -> Plan:
    doc: dict[str, Any] = {"id": "s1", "job_id": "j1", "when": when, "target": {"all": True}}
    doc.update(extra)
    return lower(parse_schedule(doc))


# --- lowering ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("when", "kind", "every"),
    [
        ({"per_pc": "once"}, "per_pc_once", None),
        ({"per_pc": {"every": "1h"}}, "per_pc_every", timedelta(hours=1)),
        ({"per_target": "once"}, "per_target_once", None),
        ({"per_target": {"every": "1d"}}, "per_target_every", timedelta(days=1)),
    ],
)
def test_reconcile_shapes_lower_to_minute_poll(
    when: dict[str, Any], kind: str, every: timedelta | None
) -> None:
    plan = schedule(when)
    assert isinstance(plan.trigger, ReconcileTrigger)
    assert plan.trigger.poll == RECONCILE_POLL == timedelta(minutes=1)
    assert plan.dedup == DedupMode(kind, every)  # type: ignore[arg-type]
    assert plan.is_reconcile
    assert str(plan.dedup).startswith(kind)
    # polls are the UTC minute boundaries
    assert next_fire(plan, Z("2025-01-01T10:00:00"), FAR) == Z("2025-01-01T10:01")
    assert next_fire(plan, Z("2025-01-01T10:00:59.5"), FAR) == Z("2025-01-01T10:01")
    assert prev_fire(plan, Z("2025-01-01T10:00:59.5"), FAR) == Z("2025-01-01T10:00")


def test_calendar_lowers_with_parsed_days() -> None:
    plan = schedule({"calendar": {"at": "07:15", "days": ["mon-fri", "sat#2", "sunL"]}})
    assert plan.trigger == CalendarTrigger(
        at=time(7, 15),
        days=(*(DaySpec(i) for i in range(5)), DaySpec(5, nth=2), DaySpec(6, last=True)),
    )
    assert plan.dedup is None and not plan.is_reconcile and not plan.is_one_shot


def test_one_shot_lowers() -> None:
    plan = schedule({"calendar": {"at": "2030-05-01 09:30"}}, tz="Europe/Berlin")
    assert plan.trigger == CalendarTrigger(at=time(9, 30), one_shot=date(2030, 5, 1))
    assert plan.is_one_shot


def test_cron_lowers_normalised() -> None:
    assert schedule({"cron": "  */5   * * * *"}).trigger == CronTrigger("*/5 * * * *")
    assert schedule({"cron": "0 */5 * * * *"}).trigger == CronTrigger("0 */5 * * * *")


def test_gate_fields_are_carried() -> None:
    plan = schedule(
        {"cron": "0 * * * *"},
        tz="Asia/Kolkata",
        runs_on="agent",
        enabled=False,
        jitter="30s",
        active={"from": "2025-01-01", "until": "2025-02-01 12:00"},
        constraints={"window": "22:00-02:00", "skip_dates": ["2025-01-05"]},
        on_failure={"retry": {"max": 3, "backoff": "10s"}},
        starting_deadline="5m",
        catchup="skip",
    )
    assert plan.tz == "Asia/Kolkata"
    assert plan.zone(UTC) == ZoneInfo("Asia/Kolkata")
    assert plan.runs_on == "agent" and plan.enabled is False
    assert plan.jitter == timedelta(seconds=30)
    assert plan.active_from == date(2025, 1, 1)
    assert plan.active_until == datetime(2025, 2, 1, 12, 0)
    assert str(plan.window) == "22:00-02:00"
    assert plan.skip_dates == frozenset({date(2025, 1, 5)})
    assert (plan.retry_max, plan.retry_backoff) == (3, timedelta(seconds=10))
    assert plan.starting_deadline == timedelta(minutes=5)
    assert plan.catchup == "skip"


def test_defaults() -> None:
    plan = schedule({"per_pc": "once"})
    assert plan.tz == "local" and plan.zone(FAR) is FAR
    assert plan.catchup == "once" and plan.starting_deadline is None
    assert plan.retry_max == 0 and plan.window is None and not plan.skip_dates


def test_dedup_mode_invariants() -> None:
    with pytest.raises(ValueError):
        DedupMode("per_pc_every")
    with pytest.raises(ValueError):
        DedupMode("per_pc_once", timedelta(hours=1))
    with pytest.raises(ValueError):
        DedupMode("per_target_every", timedelta(0))
    assert DedupMode("per_target_once").scope == "per_target"
    assert DedupMode("per_pc_every", timedelta(1)).scope == "per_pc"


# --- day rules -----------------------------------------------------------------------------
def local_dates(plan: Plan, after: str, n: int) -> list[date]:
    return [f.astimezone(plan.zone(FAR)).date() for f in next_fires(plan, Z(after), FAR, n)]


def test_second_tuesday() -> None:
    plan = schedule({"calendar": {"at": "09:00", "days": ["tue#2"]}}, tz="utc")
    assert local_dates(plan, "2025-01-01T00:00", 4) == [
        date(2025, 1, 14),
        date(2025, 2, 11),
        date(2025, 3, 11),
        date(2025, 4, 8),
    ]


def test_last_friday() -> None:
    plan = schedule({"calendar": {"at": "17:00", "days": ["friL"]}}, tz="Europe/Berlin")
    assert local_dates(plan, "2025-01-01T00:00", 4) == [
        date(2025, 1, 31),
        date(2025, 2, 28),
        date(2025, 3, 28),
        date(2025, 4, 25),
    ]


def test_fifth_monday_is_sparse_but_found() -> None:
    plan = schedule({"calendar": {"at": "09:00", "days": ["mon#5"]}}, tz="utc")
    # 2025: Mar 31, Jun 30, Sep 29, Dec 29
    assert local_dates(plan, "2025-01-01T00:00", 4) == [
        date(2025, 3, 31),
        date(2025, 6, 30),
        date(2025, 9, 29),
        date(2025, 12, 29),
    ]


def test_mon_fri() -> None:
    plan = schedule({"calendar": {"at": "08:00", "days": ["mon-fri"]}}, tz="utc")
    days = local_dates(plan, "2025-01-03T09:00", 6)  # after Friday's fire
    assert [d.strftime("%a") for d in days] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon"]
    assert days[0] == date(2025, 1, 6)


def test_wrap_around_range() -> None:
    plan = schedule({"calendar": {"at": "08:00", "days": ["fri-mon"]}}, tz="utc")
    days = local_dates(plan, "2025-01-01T00:00", 6)
    assert [d.strftime("%a") for d in days] == ["Fri", "Sat", "Sun", "Mon", "Fri", "Sat"]
    plan = schedule({"calendar": {"at": "08:00", "days": ["sun-sun"]}}, tz="utc")
    assert {d.strftime("%a") for d in local_dates(plan, "2025-01-01T00:00", 3)} == {"Sun"}


def test_days_combined_and_every_day() -> None:
    plan = schedule({"calendar": {"at": "08:00", "days": ["mon", "tue#2", "friL"]}}, tz="utc")
    assert local_dates(plan, "2025-01-12T00:00", 4) == [
        date(2025, 1, 13),  # mon
        date(2025, 1, 14),  # tue#2
        date(2025, 1, 20),  # mon
        date(2025, 1, 27),  # mon (then friL on the 31st)
    ]
    every_day = schedule({"calendar": {"at": "08:00"}}, tz="utc")
    assert local_dates(every_day, "2025-01-01T00:00", 3) == [
        date(2025, 1, 1),
        date(2025, 1, 2),
        date(2025, 1, 3),
    ]


def test_day_rules_use_the_schedule_zone_date() -> None:
    # 01:00 on Mondays in Sydney (AEST, +10) is Sunday 15:00Z: the day rule is matched
    # against the date in the schedule's zone, not the UTC date.
    plan = schedule({"calendar": {"at": "01:00", "days": ["mon"]}}, tz="Australia/Sydney")
    fire = next_fire(plan, Z("2025-06-01T00:00"), FAR)
    assert fire == Z("2025-06-01T15:00")  # Mon 2025-06-02 01:00 AEST
    assert fire is not None and fire.weekday() == 6


# --- one-shots -----------------------------------------------------------------------------
def test_future_one_shot_fires_once_then_never() -> None:
    plan = schedule({"calendar": {"at": "2030-05-01 09:30"}}, tz="Europe/Berlin")
    now = Z("2030-04-01T00:00")
    assert not is_past_one_shot(plan, now, FAR)
    first = next_fire(plan, now, FAR)
    assert first == Z("2030-05-01T07:30")
    assert one_shot_instant(plan, FAR) == first
    assert next_fire(plan, first, FAR) is None
    assert next_fires(plan, now, FAR, 5) == [first]
    assert prev_fire(plan, first, FAR) == first
    assert prev_fire(plan, first - timedelta(seconds=1), FAR) is None
    assert is_past_one_shot(plan, first, FAR)


def test_past_one_shot_never_fires() -> None:
    plan = schedule({"calendar": {"at": "2020-01-01 00:00"}}, tz="utc")
    now = Z("2025-01-01T00:00")
    assert is_past_one_shot(plan, now, FAR)
    assert next_fire(plan, now, FAR) is None
    assert next_fires(plan, now, FAR, 3) == []


def test_one_shot_in_a_gap() -> None:
    plan = schedule({"calendar": {"at": "2025-03-09 02:30"}}, tz="America/New_York")
    assert one_shot_instant(plan, FAR) == Z("2025-03-09T07:00")
    assert one_shot_instant(schedule({"per_pc": "once"}), FAR) is None
    assert not is_past_one_shot(schedule({"cron": "* * * * *"}), Z("2025-01-01T00:00"), FAR)


def test_naive_after_is_rejected() -> None:
    plan = schedule({"cron": "* * * * *"})
    with pytest.raises(ValueError):
        next_fire(plan, datetime(2025, 1, 1), FAR)


def test_a_reconcile_plan_polls_at_the_given_interval() -> None:
    """The backend lowers with its configured reconcile poll (tests shorten it)."""
    doc: dict[str, Any] = {"id": "s", "job_id": "j1", "target": {"all": True}}
    s = parse_schedule({**doc, "when": {"per_pc": "once"}})
    assert lower(s).trigger == ReconcileTrigger(lower(s).dedup)  # type: ignore[arg-type]
    short = lower(s, reconcile_poll=timedelta(seconds=2))
    assert isinstance(short.trigger, ReconcileTrigger)
    assert short.trigger.poll == timedelta(seconds=2)
    cal = parse_schedule({**doc, "when": {"calendar": {"at": "10:00"}}})
    assert lower(cal, reconcile_poll=timedelta(seconds=2)) == lower(cal)
