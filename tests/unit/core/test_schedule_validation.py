"""Schedules at the write boundary (SPEC §2.2, §2.3): every shape and rule, accepted and
rejected, with the exact path; plus the parsed forms a scheduler uses."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.documents import changed, field_errors
from kanade.core.models.constraints import TimeWindow
from kanade.core.models.schedule import Schedule
from kanade.core.models.when import DaySpec, parse_day
from kanade.core.validation import load_document, parse_schedule

VALID: dict[str, Any] = {
    "id": "nightly-report",
    "job_id": "disk-report",
    "when": {"calendar": {"at": "02:30", "days": ["mon-fri"]}},
    "target": {"groups": ["servers"]},
}


def sched(**changes: Any) -> dict[str, Any]:
    """VALID with ``a__b`` path changes applied (value ``...`` deletes the key)."""
    return changed(VALID, **changes)


def errors(data: object, **kw: Any) -> dict[str, str]:
    return field_errors(parse_schedule, "schedule", data, **kw)


def only_error(data: object, **kw: Any) -> tuple[str, str]:
    errs = errors(data, **kw)
    assert len(errs) == 1, errs
    return next(iter(errs.items()))


def test_minimal_valid_schedule_and_defaults() -> None:
    s = parse_schedule(VALID)
    assert s.enabled is True
    assert s.runs_on == "backend"
    assert s.tz == "local"
    assert s.catchup == "once"
    assert s.jitter == timedelta(0)
    assert s.when.shape == "calendar"


def test_full_schedule_from_yaml() -> None:
    text = """
id: patch-tuesday
job_id: apply-patches
enabled: false
description: Second Tuesday patching
when:
  calendar: {at: "03:00", days: [tue#2]}
target: {groups: [servers], pcs: [build-01]}
rollout:
  waves:
    - {pcs: [canary-1], delay: 0s}
    - {group: web, delay: 30m}
    - {percent: 50, delay: 1h}
    - {percent: 100}
  halt_on_failure_rate: 0.2
jitter: 5m
tz: Europe/Berlin
active: {from: 2026-01-01, until: 2027-01-01}
constraints: {window: "22:00-06:00", skip_dates: [2026-12-25, "2026-12-26"], max_concurrent: 20}
on_failure: {retry: {max: 3, backoff: 1m}}
starting_deadline: 2h
catchup: skip
"""
    s = parse_schedule(load_document(text), known_job_ids={"apply-patches"})
    assert s.rollout is not None and len(s.rollout.waves) == 4
    assert s.rollout.waves[1].delay == timedelta(minutes=30)
    assert s.rollout.halt_on_failure_rate == 0.2
    assert s.constraints is not None
    assert s.constraints.skip_dates == [date(2026, 12, 25), date(2026, 12, 26)]
    assert s.constraints.time_window == TimeWindow(time(22), time(6))
    assert s.retry is not None and s.retry.max == 3
    assert s.starting_deadline == timedelta(hours=2)
    assert s.zone() == ZoneInfo("Europe/Berlin")
    assert s.when.calendar is not None
    assert s.when.calendar.day_specs == (DaySpec(1, nth=2),)


# --- when: exactly one shape ------------------------------------------------------------------
@pytest.mark.parametrize(
    "when",
    [
        {"per_pc": "once"},
        {"per_pc": {"every": "1d"}},
        {"per_target": "once"},
        {"per_target": {"every": "12h"}},
        {"calendar": {"at": "09:00"}},
        {"calendar": {"at": "9:00", "days": ["mon", "wed-fri", "tue#2", "friL"]}},
        {"calendar": {"at": "2026-05-01 10:00"}},
        {"calendar": {"at": "2026-05-01T10:00"}},
        {"cron": "*/5 * * * *"},
        {"cron": "0 0 3 * * mon-fri"},
        {"cron": "0 4 * * 5L"},
    ],
)
def test_when_shapes_accepted(when: dict[str, Any]) -> None:
    assert parse_schedule(sched(when=when)).when.shape == next(iter(when))


def test_when_none_rejected() -> None:
    assert only_error(sched(when={})) == (
        "when",
        "set exactly one of per_pc, per_target, calendar or cron (got none)",
    )


def test_when_two_shapes_rejected() -> None:
    path, reason = only_error(sched(when={"per_pc": "once", "cron": "* * * * *"}))
    assert path == "when"
    assert reason.endswith("(got per_pc and cron)")


@pytest.mark.parametrize(
    ("when", "path"),
    [
        ({"per_pc": "twice"}, "when.per_pc"),
        ({"per_pc": {}}, "when.per_pc.every"),
        ({"per_pc": {"every": None}}, "when.per_pc.every"),
        ({"per_pc": {"every": "0s"}}, "when.per_pc.every"),
        ({"per_pc": {"every": "daily"}}, "when.per_pc.every"),
        ({"per_target": 5}, "when.per_target"),
        ({"calendar": {"at": "25:00"}}, "when.calendar.at"),
        ({"calendar": {"at": "12:60"}}, "when.calendar.at"),
        ({"calendar": {"at": 750}}, "when.calendar.at"),
        ({"calendar": {"at": "2026-02-30 10:00"}}, "when.calendar.at"),
        ({"calendar": {}}, "when.calendar.at"),
        ({"calendar": {"at": "10:00", "days": []}}, "when.calendar.days"),
        ({"calendar": {"at": "10:00", "days": 3}}, "when.calendar.days"),
        ({"calendar": {"at": "10:00", "days": ["mon", "funday"]}}, "when.calendar.days[1]"),
        ({"calendar": {"at": "10:00", "days": ["tue#6"]}}, "when.calendar.days[0]"),
        ({"calendar": {"at": "10:00", "days": ["tue#0"]}}, "when.calendar.days[0]"),
        ({"calendar": {"at": "10:00", "days": [1]}}, "when.calendar.days[0]"),
        ({"calendar": "10:00"}, "when.calendar"),
        ({"cron": "* * *"}, "when.cron"),
        ({"cron": "61 * * * *"}, "when.cron"),
        ({"cron": "* * 31 2 *"}, "when.cron"),
        ({"cron": "not a cron at all"}, "when.cron"),
    ],
)
def test_when_rejected(when: dict[str, Any], path: str) -> None:
    assert only_error(sched(when=when))[0] == path


def test_calendar_at_reason() -> None:
    reason = errors(sched(when={"calendar": {"at": "25:00"}}))["when.calendar.at"]
    assert reason.startswith('"25:00" is not a time')


def test_unquoted_yaml_time_hints_quotes() -> None:
    data = load_document("id: a\njob_id: b\ntarget: {all: true}\nwhen: {calendar: {at: 12:30}}\n")
    reason = errors(data)["when.calendar.at"]
    assert "750" in reason and "quotes" in reason


def test_dated_at_with_days_rejected() -> None:
    when = {"calendar": {"at": "2026-05-01 10:00", "days": ["mon"]}}
    assert only_error(sched(when=when)) == (
        "when.calendar.days",
        "a dated at (YYYY-MM-DD HH:MM) fires once; it takes no days",
    )


def test_dated_at_parsed() -> None:
    s = parse_schedule(sched(when={"calendar": {"at": "2026-05-01 10:00"}}))
    cal = s.when.calendar
    assert cal is not None
    assert cal.one_shot_date == date(2026, 5, 1)
    assert cal.time_of_day == time(10, 0)
    assert cal.fires_on(date(2026, 5, 1)) and not cal.fires_on(date(2026, 5, 2))


def test_days_as_a_bare_string() -> None:
    s = parse_schedule(sched(when={"calendar": {"at": "10:00", "days": "mon-fri, sat"}}))
    assert s.when.calendar is not None
    assert [d.weekday for d in s.when.calendar.day_specs] == [0, 1, 2, 3, 4, 5]
    assert s.when.calendar.days == ["mon-fri", "sat"]  # the original text is kept


def test_per_pc_once_and_every() -> None:
    once = parse_schedule(sched(when={"per_pc": "once"})).when.per_pc
    assert once is not None and once.once and once.every is None
    every = parse_schedule(sched(when={"per_pc": {"every": "1d"}})).when.per_pc
    assert every is not None and not every.once and every.every == timedelta(days=1)


def test_reconcile_dumps_as_written() -> None:
    s = parse_schedule(sched(when={"per_pc": "once"}))
    assert s.model_dump(mode="json")["when"]["per_pc"] == "once"
    s = parse_schedule(sched(when={"per_target": {"every": "90m"}}))
    assert s.model_dump(mode="json")["when"]["per_target"] == {"every": "1h30m"}


# --- day specs --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("token", "specs"),
    [
        ("mon", [DaySpec(0)]),
        ("SUN", [DaySpec(6)]),
        ("mon-wed", [DaySpec(0), DaySpec(1), DaySpec(2)]),
        ("fri-mon", [DaySpec(4), DaySpec(5), DaySpec(6), DaySpec(0)]),
        ("tue#2", [DaySpec(1, nth=2)]),
        ("friL", [DaySpec(4, last=True)]),
        ("fril", [DaySpec(4, last=True)]),
    ],
)
def test_parse_day(token: str, specs: list[DaySpec]) -> None:
    assert parse_day(token) == specs


@pytest.mark.parametrize("token", ["", "monday", "mon-", "mon-xyz", "tue#", "tue#6", "L", "x#1"])
def test_parse_day_rejects(token: str) -> None:
    with pytest.raises(ValueError, match="is not a day"):
        parse_day(token)


def test_day_spec_matching() -> None:
    # March 2026: Tuesdays are 3, 10, 17, 24, 31; Fridays 6, 13, 20, 27.
    second_tue = DaySpec(1, nth=2)
    assert second_tue.matches(date(2026, 3, 10))
    assert not second_tue.matches(date(2026, 3, 3))
    assert not second_tue.matches(date(2026, 3, 11))
    last_fri = DaySpec(4, last=True)
    assert last_fri.matches(date(2026, 3, 27))
    assert not last_fri.matches(date(2026, 3, 20))
    assert DaySpec(0).matches(date(2026, 3, 2))
    assert str(second_tue) == "tue#2" and str(last_fri) == "friL" and str(DaySpec(6)) == "sun"


def test_calendar_duplicate_days_collapse() -> None:
    s = parse_schedule(sched(when={"calendar": {"at": "10:00", "days": ["mon-wed", "tue"]}}))
    assert s.when.calendar is not None
    assert s.when.calendar.day_specs == (DaySpec(0), DaySpec(1), DaySpec(2))


# --- target, rollout --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"target": ...}, "target"),
        ({"target": {}}, "target"),
        ({"target": {"all": False}}, "target"),
        ({"target": {"pcs": ["bad pc"]}}, "target.pcs"),
        ({"rollout": {"waves": []}}, "rollout.waves"),
        ({"rollout": {"waves": [{"delay": "1m"}]}}, "rollout.waves[0]"),
        ({"rollout": {"waves": [{"group": "a", "percent": 5}]}}, "rollout.waves[0]"),
        ({"rollout": {"waves": [{"percent": 0}]}}, "rollout.waves[0].percent"),
        ({"rollout": {"waves": [{"percent": 101}]}}, "rollout.waves[0].percent"),
        ({"rollout": {"waves": [{"percent": "50%"}]}}, "rollout.waves[0].percent"),
        ({"rollout": {"waves": [{"pcs": []}]}}, "rollout.waves[0].pcs"),
        ({"rollout": {"waves": [{"pcs": ["ok", "not ok"]}]}}, "rollout.waves[0].pcs[1]"),
        ({"rollout": {"waves": [{"group": "a b"}]}}, "rollout.waves[0].group"),
        (
            {"rollout": {"waves": [{"percent": 5}, {"percent": 5, "delay": 5}]}},
            "rollout.waves[1].delay",
        ),
        (
            {"rollout": {"waves": [{"percent": 5}], "halt_on_failure_rate": 1.5}},
            "rollout.halt_on_failure_rate",
        ),
        (
            {"rollout": {"waves": [{"percent": 5}], "halt_on_failure_rate": -0.1}},
            "rollout.halt_on_failure_rate",
        ),
    ],
)
def test_target_and_rollout_rejected(changes: dict[str, Any], path: str) -> None:
    errs = errors(sched(**changes))
    assert path in errs, errs


@pytest.mark.parametrize("percent", [0.5, 1, 100])
def test_wave_percent_accepted(percent: float) -> None:
    s = parse_schedule(sched(rollout={"waves": [{"percent": percent}]}))
    assert s.rollout is not None and s.rollout.waves[0].percent == percent


@pytest.mark.parametrize("rate", [0, 0.5, 1])
def test_halt_rate_accepted(rate: float) -> None:
    s = parse_schedule(sched(rollout={"waves": [{"percent": 5}], "halt_on_failure_rate": rate}))
    assert s.rollout is not None and s.rollout.halt_on_failure_rate == rate


# --- scalars ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"id": "has space"}, "id"),
        ({"id": ...}, "id"),
        ({"job_id": "a.b"}, "job_id"),
        ({"enabled": "maybe"}, "enabled"),
        ({"jitter": "soon"}, "jitter"),
        ({"jitter": 30}, "jitter"),
        ({"runs_on": "cloud"}, "runs_on"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"tz": "../etc/passwd"}, "tz"),
        ({"tz": ""}, "tz"),
        ({"catchup": "all"}, "catchup"),
        ({"starting_deadline": "0s"}, "starting_deadline"),
        ({"starting_deadline": "later"}, "starting_deadline"),
        ({"description": 5}, "description"),
    ],
)
def test_scalar_rejected(changes: dict[str, Any], path: str) -> None:
    errs = errors(sched(**changes))
    assert path in errs, errs


@pytest.mark.parametrize(
    ("tz", "zone"),
    [
        ("local", None),
        ("utc", UTC),
        ("UTC", ZoneInfo("UTC")),
        ("America/New_York", ZoneInfo("America/New_York")),
    ],
)
def test_tz_accepted(tz: str, zone: object) -> None:
    assert parse_schedule(sched(tz=tz)).zone() == zone


@pytest.mark.parametrize("catchup", ["skip", "once"])
def test_catchup_accepted(catchup: str) -> None:
    assert parse_schedule(sched(catchup=catchup)).catchup == catchup


# --- active -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "active",
    [
        {"from": "2026-01-01"},
        {"until": "2026-01-01 10:00"},
        {"from": date(2026, 1, 1), "until": date(2026, 1, 2)},
        {"from": "2026-01-01", "until": "2026-01-01 00:01"},
        {"from": "2026-01-01T00:00:00+02:00", "until": "2026-01-01T00:00:00+00:00"},
    ],
)
def test_active_accepted(active: dict[str, Any]) -> None:
    assert parse_schedule(sched(active=active)).active is not None


@pytest.mark.parametrize(
    ("active", "path"),
    [
        ({"from": "2026-02-01", "until": "2026-01-01"}, "active.until"),
        ({"from": "2026-01-01", "until": "2026-01-01"}, "active.until"),
        ({"from": "2026-01-01 10:00", "until": "2026-01-01T10:00:00"}, "active.until"),
        ({"from": "2026-01-01", "until": "2026-06-01T00:00:00Z"}, "active.until"),
        ({"from": "soon"}, "active.from"),
        ({"from": 20260101}, "active.from"),
        ({"until": "2026-13-01"}, "active.until"),
    ],
)
def test_active_rejected(active: dict[str, Any], path: str) -> None:
    assert only_error(sched(active=active))[0] == path


def test_active_from_before_until_reason() -> None:
    reason = errors(sched(active={"from": "2026-02-01", "until": "2026-01-01"}))["active.until"]
    assert "after active.from" in reason


def test_active_bounds_in_zone() -> None:
    s = parse_schedule(sched(active={"from": "2026-01-01", "until": "2026-01-02 06:00"}))
    assert s.active is not None
    berlin = ZoneInfo("Europe/Berlin")
    start, end = s.active.bounds(berlin)
    assert start == datetime(2026, 1, 1, tzinfo=berlin)
    assert end == datetime(2026, 1, 2, 6, tzinfo=berlin)


def test_active_dumps_with_alias() -> None:
    s = parse_schedule(sched(active={"from": "2026-01-01", "until": "2026-01-02 06:00"}))
    dumped = s.model_dump(mode="json")["active"]
    assert dumped == {"from": "2026-01-01", "until": "2026-01-02T06:00:00"}


# --- constraints ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("window", "inside", "outside"),
    [
        ("08:00-18:00", time(8, 0), time(18, 0)),
        ("22:00-06:00", time(23, 30), time(12, 0)),
        ("22:00-06:00", time(5, 59), time(6, 0)),
        ("00:00-00:01", time(0, 0), time(0, 1)),
    ],
)
def test_window(window: str, inside: time, outside: time) -> None:
    s = parse_schedule(sched(constraints={"window": window}))
    assert s.constraints is not None
    tw = s.constraints.time_window
    assert tw is not None and str(tw) == window
    assert tw.contains(inside)
    assert not tw.contains(outside)


@pytest.mark.parametrize(
    ("constraints", "path"),
    [
        ({"window": "10:00-10:00"}, "constraints.window"),
        ({"window": "10:00"}, "constraints.window"),
        ({"window": "10:00-25:00"}, "constraints.window"),
        ({"window": 600}, "constraints.window"),
        ({"skip_dates": ["2026-02-30"]}, "constraints.skip_dates[0]"),
        ({"skip_dates": ["2026-01-01", "tomorrow"]}, "constraints.skip_dates[1]"),
        ({"skip_dates": [datetime(2026, 1, 1, 10)]}, "constraints.skip_dates[0]"),
        ({"skip_dates": "2026-01-01"}, "constraints.skip_dates"),
        ({"max_concurrent": 0}, "constraints.max_concurrent"),
        ({"max_concurrent": True}, "constraints.max_concurrent"),
        ({"max_concurrent": 1.5}, "constraints.max_concurrent"),
    ],
)
def test_constraints_rejected(constraints: dict[str, Any], path: str) -> None:
    assert only_error(sched(constraints=constraints))[0] == path


def test_window_start_equals_end_reason() -> None:
    reason = errors(sched(constraints={"window": "10:00-10:00"}))["constraints.window"]
    assert "same" in reason


def test_max_concurrent_accepted_on_backend() -> None:
    s = parse_schedule(sched(constraints={"max_concurrent": 1}))
    assert s.constraints is not None and s.constraints.max_concurrent == 1


# --- on_failure -------------------------------------------------------------------------------
@pytest.mark.parametrize("retries", [1, 10])
def test_retry_bounds_accepted(retries: int) -> None:
    s = parse_schedule(sched(on_failure={"retry": {"max": retries, "backoff": "30s"}}))
    assert s.retry is not None and s.retry.max == retries
    assert s.retry.backoff == timedelta(seconds=30)


@pytest.mark.parametrize("retries", [0, 11, -1, "3", True])
def test_retry_bounds_rejected(retries: object) -> None:
    path, _ = only_error(sched(on_failure={"retry": {"max": retries}}))
    assert path == "on_failure.retry.max"


def test_retry_missing_max() -> None:
    assert only_error(sched(on_failure={"retry": {"backoff": "1m"}})) == (
        "on_failure.retry.max",
        "required",
    )


# --- combinations (SPEC §2.3) -----------------------------------------------------------------
def test_per_target_with_agent_rejected() -> None:
    path, reason = only_error(sched(when={"per_target": "once"}, runs_on="agent"))
    assert path == "when.per_target"
    assert "runs_on: backend" in reason


def test_per_target_on_backend_and_per_pc_on_agent_accepted() -> None:
    assert parse_schedule(sched(when={"per_target": "once"})).runs_on == "backend"
    assert parse_schedule(sched(when={"per_pc": "once"}, runs_on="agent")).runs_on == "agent"


def test_max_concurrent_with_agent_rejected() -> None:
    path, _ = only_error(sched(constraints={"max_concurrent": 2}, runs_on="agent"))
    assert path == "constraints.max_concurrent"


def test_rollout_with_agent_rejected() -> None:
    path, _ = only_error(sched(rollout={"waves": [{"percent": 10}]}, runs_on="agent"))
    assert path == "rollout"


def test_every_combination_reported_at_once() -> None:
    errs = errors(
        sched(
            when={"per_target": "once"},
            constraints={"max_concurrent": 2},
            runs_on="agent",
        )
    )
    assert set(errs) == {"when.per_target", "constraints.max_concurrent"}


def test_unknown_job_id_rejected_when_known_ids_given() -> None:
    assert only_error(VALID, known_job_ids={"other"}) == (
        "job_id",
        "no job 'disk-report' exists; create the job first",
    )
    assert parse_schedule(VALID, known_job_ids={"disk-report"}).job_id == "disk-report"
    assert parse_schedule(VALID).job_id == "disk-report"  # not checked without the list


# --- strict vs tolerant -----------------------------------------------------------------------
def test_unknown_fields_at_every_depth() -> None:
    data = sched(
        colour="red",
        when={"calendar": {"at": "10:00", "dayz": ["mon"]}},
        rollout={"waves": [{"percent": 5, "dealy": "1m"}]},
        constraints={"window": "10:00-11:00", "extra": 1},
        active={"from_": "2026-01-01"},
    )
    errs = errors(data)
    assert set(errs) == {
        "colour",
        "when.calendar.dayz",
        "rollout.waves[0].dealy",
        "constraints.extra",
        "active.from_",
    }
    assert errs["rollout.waves[0].dealy"] == 'unknown field (did you mean "delay"?)'


def test_unknown_fields_and_other_errors_together() -> None:
    errs = errors(sched(when={"calendar": {"at": "25:00"}, "bogus": 1}, jitter="x"))
    assert set(errs) == {"when.bogus", "when.calendar.at", "jitter"}


def test_tolerant_mode_drops_unknown_fields() -> None:
    data = sched(colour="red", when={"per_pc": {"every": "1d", "future": True}})
    s = parse_schedule(data, strict=False)
    assert s.model_extra == {}
    assert s.when.per_pc is not None and s.when.per_pc.model_extra == {}


def test_tolerant_mode_still_rejects_bad_values() -> None:
    assert only_error(sched(colour="red", tz="Nowhere/Land"), strict=False)[0] == "tz"


def test_non_text_keys_are_unknown_fields() -> None:
    odd_keys: dict[Any, Any] = {1: "x", None: "y"}
    errs = errors({**VALID, **odd_keys})
    assert errs["1"].startswith("unknown field")
    assert errs["None"].startswith("unknown field")
    assert len(errs) == 2
    assert parse_schedule({**VALID, **odd_keys}, strict=False).id == VALID["id"]


def test_round_trip_through_json() -> None:
    text_doc = sched(
        when={"calendar": {"at": "10:00", "days": ["mon-fri"]}},
        active={"from": "2026-01-01"},
        constraints={"window": "22:00-06:00", "skip_dates": ["2026-12-25"]},
        on_failure={"retry": {"max": 2}},
        rollout={"waves": [{"percent": 10, "delay": "1h"}]},
    )
    s = parse_schedule(text_doc)
    again = parse_schedule(s.model_dump(mode="json"))
    assert again == s
    assert again.when.calendar is not None
    assert again.when.calendar.day_specs == s.when.calendar.day_specs  # type: ignore[union-attr]


def test_model_is_the_reader() -> None:
    # The plain model keeps unknown fields (tolerant reader) and enforces the rules.
    s = Schedule.model_validate({**VALID, "future_field": 1})
    assert s.model_extra == {"future_field": 1}


def test_naive_datetime_and_aware_offsets_compare() -> None:
    s = parse_schedule(
        sched(active={"from": "2026-01-01T00:00:00+02:00", "until": "2026-01-01T00:00:00Z"})
    )
    assert s.active is not None
    start, _ = s.active.bounds(UTC)
    assert start is not None and start.utcoffset() == timedelta(hours=2)
