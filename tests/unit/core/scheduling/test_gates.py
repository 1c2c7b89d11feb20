"""Gates in the order of SPEC §4.4 (active, window, skip_dates, freeze, starting_deadline,
catchup) and the per-tick decision both schedulers make."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.scheduling.sched_plans import plan_of
from kanade.core import exitcodes
from kanade.core.scheduling import (
    Fire,
    Freeze,
    Missed,
    Plan,
    Skip,
    active_bounds,
    deadline_at,
    decide_tick,
    freeze_from_json,
    gate_reason,
    is_frozen,
    next_gated_fires,
)

BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
NY = ZoneInfo("America/New_York")
FAR = ZoneInfo("Pacific/Kiritimati")


def Z(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def reason(plan: Plan, nominal: datetime, *, now: datetime | None = None, **kw: Any) -> str | None:
    got = gate_reason(plan, nominal, now=now or nominal, local_tz=FAR, **kw)
    return None if got is None else got[0]


def berlin(y: int, mo: int, d: int, h: int, mi: int) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=BERLIN).astimezone(UTC)


# --- window --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("hh", "mm", "inside"),
    [
        (23, 59, True),
        (0, 0, True),
        (1, 59, True),
        (2, 0, False),
        (21, 59, False),
        (22, 0, True),
        (12, 0, False),
    ],
)
def test_window_crossing_midnight(hh: int, mm: int, inside: bool) -> None:
    plan = plan_of(tz="Europe/Berlin", constraints={"window": "22:00-02:00"})
    nominal = berlin(2025, 1, 15, hh, mm)
    assert reason(plan, nominal) == (None if inside else "outside_window")


def test_window_is_read_in_the_schedule_zone() -> None:
    plan = plan_of(tz="Asia/Kolkata", constraints={"window": "09:00-17:00"})
    assert reason(plan, Z("2025-01-15T03:30")) is None  # 09:00 IST
    assert reason(plan, Z("2025-01-15T03:29")) == "outside_window"  # 08:59 IST
    assert reason(plan, Z("2025-01-15T11:30")) == "outside_window"  # 17:00 IST
    detail = gate_reason(plan, Z("2025-01-15T11:30"), now=Z("2025-01-15T11:30"), local_tz=FAR)
    assert detail is not None and "17:00 is outside window 09:00-17:00" in detail[1]


def test_window_for_local_uses_callers_zone() -> None:
    plan = plan_of(tz="local", constraints={"window": "09:00-17:00"})
    noon_utc = Z("2025-01-15T12:00")
    assert gate_reason(plan, noon_utc, now=noon_utc, local_tz=UTC) is None
    assert gate_reason(plan, noon_utc, now=noon_utc, local_tz=KOLKATA) is not None


# --- active --------------------------------------------------------------------------------
def test_active_half_open_edges_naive_dates_and_times() -> None:
    plan = plan_of(tz="Europe/Berlin", active={"from": "2025-01-10", "until": "2025-01-20 12:00"})
    start, end = active_bounds(plan, FAR)
    assert start == berlin(2025, 1, 10, 0, 0) and end == berlin(2025, 1, 20, 12, 0)
    us = timedelta(microseconds=1)
    assert reason(plan, start - us) == "inactive"
    assert reason(plan, start) is None
    assert reason(plan, end - us) is None
    assert reason(plan, end) == "inactive"


def test_active_with_offsets_and_open_ends() -> None:
    plan = plan_of(active={"from": "2025-01-10T00:00:00+05:30"})
    assert active_bounds(plan, FAR) == (Z("2025-01-09T18:30"), None)
    assert reason(plan, Z("2025-01-09T18:29:59")) == "inactive"
    assert reason(plan, Z("2099-01-01T00:00")) is None
    plan = plan_of(active={"until": "2025-01-10"})
    assert reason(plan, Z("2025-01-09T23:59:59")) is None
    assert reason(plan, Z("2025-01-10T00:00")) == "inactive"


def test_active_bound_in_a_dst_gap_uses_the_gap_rule() -> None:
    plan = plan_of(tz="America/New_York", active={"from": "2025-03-09 02:30"})
    assert active_bounds(plan, FAR)[0] == Z("2025-03-09T07:00")


def test_inactive_and_disabled_skips_are_quiet() -> None:
    plan = plan_of(active={"until": "2025-01-10"})
    out = decide_tick(
        plan, last_tick=Z("2025-02-01T09:59"), now=Z("2025-02-01T10:00"), local_tz=FAR
    )
    (skip,) = out.decisions
    assert isinstance(skip, Skip) and skip.reason == "inactive" and skip.quiet
    plan = plan_of(enabled=False)
    out = decide_tick(
        plan, last_tick=Z("2025-02-01T09:59"), now=Z("2025-02-01T10:00"), local_tz=FAR
    )
    (skip,) = out.decisions
    assert isinstance(skip, Skip) and skip.reason == "disabled" and skip.quiet


# --- skip_dates ----------------------------------------------------------------------------
def test_skip_dates_use_local_date_of_nominal_time() -> None:
    plan = plan_of(tz="Asia/Kolkata", constraints={"skip_dates": ["2025-01-05"]})
    assert reason(plan, Z("2025-01-04T18:29")) is None  # 23:59 IST on the 4th
    assert reason(plan, Z("2025-01-04T18:30")) == "skip_date"  # 00:00 IST on the 5th
    assert reason(plan, Z("2025-01-05T10:00")) == "skip_date"
    assert reason(plan, Z("2025-01-05T18:29")) == "skip_date"  # 23:59 IST on the 5th
    assert reason(plan, Z("2025-01-05T18:30")) is None  # the 6th


# --- freeze --------------------------------------------------------------------------------
def test_freeze_edges() -> None:
    freeze = Freeze(Z("2025-01-10T00:00"), Z("2025-01-11T00:00"))
    us = timedelta(microseconds=1)
    assert not freeze.covers(Z("2025-01-10T00:00") - us)
    assert freeze.covers(Z("2025-01-10T00:00"))
    assert freeze.covers(Z("2025-01-11T00:00") - us)
    assert not freeze.covers(Z("2025-01-11T00:00"))
    assert Freeze().covers(Z("1990-01-01T00:00")) and Freeze().covers(Z("2999-01-01T00:00"))
    assert Freeze(until=Z("2025-01-01T00:00")).covers(Z("2024-01-01T00:00"))
    assert not Freeze(until=Z("2025-01-01T00:00")).covers(Z("2025-01-01T00:00"))
    assert Freeze(from_=Z("2025-01-01T00:00")).covers(Z("2099-01-01T00:00"))
    assert not is_frozen(None, Z("2025-01-01T00:00"))
    with pytest.raises(ValueError):
        Freeze(Z("2025-01-02T00:00"), Z("2025-01-01T00:00"))
    with pytest.raises(ValueError):
        Freeze(datetime(2025, 1, 1))


def test_freeze_gate_at_nominal_and_at_now() -> None:
    plan = plan_of()
    freeze = Freeze(Z("2025-01-10T00:00"), Z("2025-01-11T00:00"))
    assert reason(plan, Z("2025-01-10T05:00"), freeze=freeze) == "frozen"
    assert reason(plan, Z("2025-01-11T00:00"), freeze=freeze) is None
    # an occurrence from before the freeze is not run late during it
    late = reason(plan, Z("2025-01-09T23:00"), now=Z("2025-01-10T00:30"), freeze=freeze)
    assert late == "frozen"
    # an open-ended freeze holds everything
    assert reason(plan, Z("2030-01-01T00:00"), freeze=Freeze()) == "frozen"


def test_freeze_json_round_trip_and_tolerance() -> None:
    freeze = freeze_from_json(
        {"from": "2025-01-10T00:00:00Z", "until": "2025-01-11T01:00:00+01:00"}
    )
    assert freeze == Freeze(Z("2025-01-10T00:00"), Z("2025-01-11T00:00"))
    assert freeze_from_json(freeze.to_json()) == freeze
    assert freeze_from_json({}) == Freeze()
    assert freeze_from_json({"until": "2025-01-01 00:00", "by": "alice"}).until == Z(
        "2025-01-01T00:00"
    )
    with pytest.raises(ValueError):
        freeze_from_json({"from": "yesterday"})
    with pytest.raises(ValueError):
        freeze_from_json({"from": 12})


def test_gate_order_active_window_skipdate_freeze() -> None:
    plan = plan_of(
        active={"until": "2025-01-01"},
        constraints={"window": "01:00-02:00", "skip_dates": ["2025-02-01"]},
    )
    nominal = Z("2025-02-01T12:00")  # fails every gate
    assert reason(plan, nominal, freeze=Freeze()) == "inactive"
    plan = plan_of(constraints={"window": "01:00-02:00", "skip_dates": ["2025-02-01"]})
    assert reason(plan, nominal, freeze=Freeze()) == "outside_window"
    plan = plan_of(constraints={"skip_dates": ["2025-02-01"]})
    assert reason(plan, nominal, freeze=Freeze()) == "skip_date"
    assert reason(plan_of(), nominal, freeze=Freeze()) == "frozen"


# --- starting_deadline ---------------------------------------------------------------------
def test_starting_deadline_exactly_at_boundary_fires() -> None:
    plan = plan_of(starting_deadline="5m")
    assert deadline_at(plan, Z("2025-01-01T10:00")) == Z("2025-01-01T10:05")
    out = decide_tick(
        plan, last_tick=Z("2025-01-01T09:59"), now=Z("2025-01-01T10:05"), local_tz=FAR
    )
    (fire,) = out.decisions
    assert isinstance(fire, Fire)
    assert fire.nominal == Z("2025-01-01T10:00")
    assert fire.deadline_at == Z("2025-01-01T10:05")
    assert fire.late == timedelta(minutes=5)


def test_starting_deadline_a_microsecond_late_skips_with_125() -> None:
    plan = plan_of(starting_deadline="5m")
    now = Z("2025-01-01T10:05") + timedelta(microseconds=1)
    out = decide_tick(plan, last_tick=Z("2025-01-01T09:59"), now=now, local_tz=FAR)
    (skip,) = out.decisions
    assert isinstance(skip, Skip)
    assert skip.reason == "deadline_passed" and skip.exit_code == exitcodes.DEADLINE_PASSED == 125
    assert not skip.quiet
    assert "0.000s late" in skip.detail and "deadline 2025-01-01T10:05:00Z" in skip.detail
    assert out.fire is None


def test_no_deadline_means_no_deadline_at() -> None:
    plan = plan_of()
    out = decide_tick(
        plan, last_tick=Z("2025-01-01T09:59"), now=Z("2025-01-01T10:00"), local_tz=FAR
    )
    assert out.fire is not None and out.fire.deadline_at is None


# --- catchup -------------------------------------------------------------------------------
OUTAGE_LAST = Z("2025-01-01T09:00:30")  # fired 09:00, then down for 3.5 hours
OUTAGE_NOW = Z("2025-01-01T12:30")
HOURS_10_11 = (Z("2025-01-01T10:00"), Z("2025-01-01T11:00"))
NOON = Z("2025-01-01T12:00")


def test_catchup_once_after_three_hour_outage_runs_latest_only() -> None:
    out = decide_tick(plan_of(), last_tick=OUTAGE_LAST, now=OUTAGE_NOW, local_tz=FAR)
    missed, fire = out.decisions
    assert isinstance(missed, Missed) and missed.nominals == HOURS_10_11 and not missed.more
    assert isinstance(fire, Fire) and fire.nominal == NOON and fire.caught_up
    assert fire.late == timedelta(minutes=30)
    assert out.missed == HOURS_10_11 and out.fire == fire
    assert out.last_tick == OUTAGE_NOW and out.next_fire == Z("2025-01-01T13:00")


def test_catchup_once_within_deadline() -> None:
    out = decide_tick(
        plan_of(starting_deadline="1h"), last_tick=OUTAGE_LAST, now=OUTAGE_NOW, local_tz=FAR
    )
    assert out.fire is not None and out.fire.nominal == NOON
    assert out.fire.deadline_at == Z("2025-01-01T13:00")


def test_catchup_once_outside_deadline_is_a_deadline_skip() -> None:
    out = decide_tick(
        plan_of(starting_deadline="10m"), last_tick=OUTAGE_LAST, now=OUTAGE_NOW, local_tz=FAR
    )
    missed, skip = out.decisions
    assert isinstance(missed, Missed) and missed.nominals == HOURS_10_11
    assert isinstance(skip, Skip) and skip.nominal == NOON and skip.reason == "deadline_passed"
    assert out.fire is None


def test_catchup_skip_records_all_as_missed() -> None:
    out = decide_tick(plan_of(catchup="skip"), last_tick=OUTAGE_LAST, now=OUTAGE_NOW, local_tz=FAR)
    (missed,) = out.decisions
    assert isinstance(missed, Missed)
    assert missed.nominals == (*HOURS_10_11, NOON)
    assert out.fire is None


def test_catchup_skip_fires_an_occurrence_the_recovered_scheduler_was_up_for() -> None:
    # Back at 11:59:50, deciding noon 2 s late: its own lateness, on time.
    now = NOON + timedelta(seconds=2)
    out = decide_tick(
        plan_of(catchup="skip"),
        last_tick=OUTAGE_LAST,
        now=now,
        local_tz=FAR,
        up_since=NOON - timedelta(seconds=10),
    )
    missed, fire = out.decisions
    assert isinstance(missed, Missed) and missed.nominals == HOURS_10_11
    assert isinstance(fire, Fire) and fire.nominal == NOON and not fire.caught_up


def test_catchup_skip_misses_an_occurrence_it_was_down_for_however_short() -> None:
    # Issue #14 item 5: down 5 s before noon, back 41 s after (well inside the 60 s late
    # tolerance): noon came while nothing could fire it, so `skip` records it missed.
    plan = plan_of(catchup="skip")
    last = NOON - timedelta(seconds=5)
    up = NOON + timedelta(seconds=41)
    out = decide_tick(plan, last_tick=last, now=up + timedelta(milliseconds=30), local_tz=FAR,
                      up_since=up)  # fmt: skip
    (missed,) = out.decisions
    assert isinstance(missed, Missed) and missed.nominals == (NOON,)
    assert out.fire is None and out.missed == (NOON,)
    # A microsecond of outage across the nominal instant is an outage too.
    tiny = decide_tick(plan, last_tick=last, now=NOON + timedelta(seconds=1), local_tz=FAR,
                       up_since=NOON + timedelta(microseconds=1))  # fmt: skip
    assert tiny.fire is None and tiny.missed == (NOON,)
    # Up exactly at the nominal instant: it was up for it.
    edge = decide_tick(plan, last_tick=last, now=NOON + timedelta(seconds=1), local_tz=FAR,
                       up_since=NOON)  # fmt: skip
    assert edge.fire is not None and not edge.fire.caught_up


def test_catchup_once_runs_an_occurrence_it_was_down_for_as_the_catch_up() -> None:
    up = NOON + timedelta(seconds=41)
    out = decide_tick(plan_of(catchup="once"), last_tick=NOON - timedelta(seconds=5),
                      now=up, local_tz=FAR, up_since=up)  # fmt: skip
    (fire,) = out.decisions
    assert isinstance(fire, Fire) and fire.nominal == NOON and fire.caught_up
    # ... within its starting deadline only.
    strict = decide_tick(plan_of(catchup="once", starting_deadline="30s"),
                         last_tick=NOON - timedelta(seconds=5), now=up, local_tz=FAR,
                         up_since=up)  # fmt: skip
    assert strict.fire is None and strict.skips[0].reason == "deadline_passed"


def test_a_live_scheduler_late_beyond_the_tolerance_still_misses_under_skip() -> None:
    # Up all along, but stalled: deciding noon 61 s late is not on time either.
    out = decide_tick(plan_of(catchup="skip"), last_tick=NOON - timedelta(seconds=5),
                      now=NOON + timedelta(seconds=61), local_tz=FAR,
                      up_since=NOON - timedelta(hours=1))  # fmt: skip
    assert out.fire is None and out.missed == (NOON,)


def test_late_tolerance_boundary() -> None:
    plan = plan_of(catchup="skip")
    last = Z("2025-01-01T09:59:59")
    on_time = decide_tick(
        plan, last_tick=last, now=NOON - timedelta(hours=2) + timedelta(seconds=60), local_tz=FAR
    )
    assert on_time.fire is not None
    late = decide_tick(plan, last_tick=last, now=Z("2025-01-01T10:01:00.000001"), local_tz=FAR)
    assert late.fire is None and late.missed == (Z("2025-01-01T10:00"),)
    lenient = decide_tick(
        plan,
        last_tick=last,
        now=Z("2025-01-01T10:04"),
        local_tz=FAR,
        late_tolerance=timedelta(minutes=5),
    )
    assert lenient.fire is not None and not lenient.fire.caught_up


def test_catchup_with_gates_fires_latest_eligible_and_reports_gated() -> None:
    plan = plan_of(constraints={"skip_dates": []}, catchup="once")
    freeze = Freeze(Z("2025-01-01T10:30"), Z("2025-01-01T11:30"))
    out = decide_tick(plan, last_tick=OUTAGE_LAST, now=OUTAGE_NOW, local_tz=FAR, freeze=freeze)
    skip, missed, fire = out.decisions
    assert isinstance(skip, Skip) and skip.nominal == HOURS_10_11[1] and skip.reason == "frozen"
    assert isinstance(missed, Missed) and missed.nominals == (HOURS_10_11[0],)
    assert isinstance(fire, Fire) and fire.nominal == NOON
    # window: only 11:00 is inside → it is the one that runs at recovery
    windowed = plan_of(constraints={"window": "10:30-11:30"})
    out = decide_tick(windowed, last_tick=OUTAGE_LAST, now=OUTAGE_NOW, local_tz=FAR)
    assert [d.kind for d in out.decisions] == ["skip", "skip", "fire"]
    assert out.fire is not None and out.fire.nominal == HOURS_10_11[1]


def test_freeze_now_holds_catchup() -> None:
    out = decide_tick(
        plan_of(),
        last_tick=OUTAGE_LAST,
        now=OUTAGE_NOW,
        local_tz=FAR,
        freeze=Freeze(from_=Z("2025-01-01T12:15")),
    )
    assert [d.reason for d in out.skips] == ["frozen", "frozen", "frozen"]
    assert out.fire is None and out.missed == ()


def test_long_outage_with_dense_cron_is_truncated_but_runs_latest() -> None:
    plan = plan_of({"cron": "* * * * * *"})  # every second
    out = decide_tick(
        plan,
        last_tick=Z("2025-01-01T00:00"),
        now=Z("2025-01-02T00:00"),
        local_tz=FAR,
        max_listed=50,
    )
    missed, fire = out.decisions
    assert isinstance(missed, Missed) and missed.more and len(missed.nominals) == 50
    assert isinstance(fire, Fire) and fire.nominal == Z("2025-01-02T00:00")


# --- ordinary ticking ----------------------------------------------------------------------
def test_ticking_fires_each_occurrence_exactly_once() -> None:
    plan = plan_of({"cron": "*/5 * * * *"}, tz="America/New_York")
    now = Z("2025-03-09T05:00")  # New York's spring-forward day, midnight to midnight
    last = now
    fired: list[Fire] = []
    step = timedelta(seconds=7)
    while now < Z("2025-03-10T04:00"):
        now += step
        out = decide_tick(plan, last_tick=last, now=now, local_tz=FAR)
        assert not out.missed and not out.skips
        if out.fire is not None:
            assert out.fire.late < step
            fired.append(out.fire)
        last = out.last_tick
    # a 23-hour day: the gap's 02:xx slots all collapse onto 03:00 EDT, which fires once
    assert len(fired) == 23 * 12
    assert len({f.occurrence_id for f in fired}) == len(fired)


def test_clock_step_back_fires_nothing_and_keeps_last_tick() -> None:
    plan = plan_of()
    out = decide_tick(
        plan, last_tick=Z("2025-01-01T10:00:05"), now=Z("2025-01-01T09:30"), local_tz=FAR
    )
    assert out.decisions == () and out.last_tick == Z("2025-01-01T10:00:05")
    # stepping forward again does not re-fire 10:00
    again = decide_tick(plan, last_tick=out.last_tick, now=Z("2025-01-01T10:00:30"), local_tz=FAR)
    assert again.decisions == ()


def test_same_tick_decided_twice_names_the_same_occurrence() -> None:
    plan = plan_of()
    a = decide_tick(
        plan, last_tick=Z("2025-01-01T09:59:58"), now=Z("2025-01-01T10:00:01"), local_tz=FAR
    )
    b = decide_tick(
        plan, last_tick=Z("2025-01-01T09:59:59"), now=Z("2025-01-01T10:00:02"), local_tz=FAR
    )
    assert a.fire is not None and b.fire is not None
    assert a.fire.occurrence_id == b.fire.occurrence_id == "sched:s1:2025-01-01T10:00:00Z"


def test_reconcile_tick_polls_each_minute_with_quiet_gate_skips() -> None:
    plan = plan_of({"per_pc": {"every": "1h"}}, constraints={"window": "09:00-17:00"})
    out = decide_tick(
        plan, last_tick=Z("2025-01-01T10:00:30"), now=Z("2025-01-01T10:01:00.2"), local_tz=FAR
    )
    assert out.fire is not None and out.fire.nominal == Z("2025-01-01T10:01")
    assert out.fire.occurrence_id == "sched:s1:2025-01-01T10:01:00Z"
    # a long outage: only the current poll, never "missed" polls
    out = decide_tick(
        plan, last_tick=Z("2025-01-01T10:00:30"), now=Z("2025-01-01T15:00:10"), local_tz=FAR
    )
    assert [d.kind for d in out.decisions] == ["fire"]
    assert (
        out.fire is not None
        and out.fire.nominal == Z("2025-01-01T15:00")
        and not out.fire.caught_up
    )
    # nothing between polls
    out = decide_tick(
        plan, last_tick=Z("2025-01-01T10:01:01"), now=Z("2025-01-01T10:01:59"), local_tz=FAR
    )
    assert out.decisions == ()
    # outside the window: a quiet skip
    out = decide_tick(
        plan, last_tick=Z("2025-01-01T20:00:30"), now=Z("2025-01-01T20:01:00"), local_tz=FAR
    )
    (skip,) = out.decisions
    assert isinstance(skip, Skip) and skip.reason == "outside_window" and skip.quiet


# --- gated previews ------------------------------------------------------------------------
def test_next_gated_fires_skip_gated_occurrences() -> None:
    plan = plan_of(
        {"calendar": {"at": "23:30"}},
        tz="Europe/Berlin",
        constraints={"window": "22:00-02:00", "skip_dates": ["2025-01-02"]},
        active={"from": "2025-01-01", "until": "2025-01-05"},
    )
    fires = next_gated_fires(plan, Z("2024-06-01T00:00"), FAR, 10)
    assert [f.astimezone(BERLIN).date() for f in fires] == [
        date(2025, 1, 1),
        date(2025, 1, 3),
        date(2025, 1, 4),
    ]
    assert all(f.astimezone(BERLIN).time() == time(23, 30) for f in fires)
    frozen = next_gated_fires(plan, Z("2024-06-01T00:00"), FAR, 10, freeze=Freeze())
    assert frozen == []
