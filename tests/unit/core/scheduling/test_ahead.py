"""Fires decided ahead of their instant (kanade.core.scheduling.ahead): what may be
prepared, and what is looked at again when the instant comes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.scheduling.sched_plans import plan_of
from kanade.core.scheduling import (
    Freeze,
    decide_ahead,
    decide_tick,
    next_fire,
    recheck_at_instant,
)

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
S = timedelta(seconds=1)


def test_an_on_time_occurrence_is_decided_as_the_tick_at_its_instant_would() -> None:
    plan = plan_of(starting_deadline="5m")
    last = T - timedelta(minutes=30)
    ahead = decide_ahead(plan, last_tick=last, nominal=T, local_tz=UTC)
    assert ahead is not None
    at_instant = decide_tick(plan, last_tick=last, now=T, local_tz=UTC)
    assert ahead.fire == at_instant.fire
    assert ahead.fire.late == timedelta(0) and not ahead.fire.caught_up
    assert ahead.fire.deadline_at == T + timedelta(minutes=5)
    assert ahead.last_tick == T
    assert ahead.next_fire == next_fire(plan, T, UTC) == T + timedelta(hours=1)


def test_reconcile_polls_are_never_decided_ahead() -> None:
    plan = plan_of({"per_pc": "once"})
    nominal = next_fire(plan, T, UTC)
    assert nominal is not None
    assert decide_ahead(plan, last_tick=T, nominal=nominal, local_tz=UTC) is None


def test_gated_occurrences_are_left_to_the_tick_at_the_instant() -> None:
    last = T - timedelta(minutes=30)
    frozen = Freeze(T - timedelta(hours=1), T + timedelta(hours=1))
    assert decide_ahead(plan_of(), last_tick=last, nominal=T, local_tz=UTC, freeze=frozen) is None
    outside = plan_of(constraints={"window": "10:00-11:00"})
    assert decide_ahead(outside, last_tick=last, nominal=T, local_tz=UTC) is None
    skipped = plan_of(constraints={"skip_dates": ["2026-03-02"]})
    assert decide_ahead(skipped, last_tick=last, nominal=T, local_tz=UTC) is None
    disabled = plan_of(enabled=False)
    assert decide_ahead(disabled, last_tick=last, nominal=T, local_tz=UTC) is None
    # A freeze that ends before the instant does not stop it.
    over = Freeze(T - timedelta(hours=2), T - timedelta(hours=1))
    assert decide_ahead(plan_of(), last_tick=last, nominal=T, local_tz=UTC, freeze=over)


def test_missed_occurrences_and_catch_ups_are_left_to_the_tick() -> None:
    # Three occurrences due since last_tick: the tick reports the earlier ones as missed.
    plan = plan_of()
    assert decide_ahead(plan, last_tick=T - timedelta(hours=3), nominal=T, local_tz=UTC) is None
    # A nominal that is not an occurrence of the plan is not a plain fire either.
    assert decide_ahead(plan, last_tick=T - S, nominal=T + S, local_tz=UTC) is None


def test_at_the_instant_on_time_goes_out_as_prepared() -> None:
    plan = plan_of(starting_deadline="30s")
    ahead = decide_ahead(plan, last_tick=T - S, nominal=T, local_tz=UTC)
    assert ahead is not None
    fire = ahead.fire
    assert recheck_at_instant(plan, fire, now=T, freeze=None) is None
    assert recheck_at_instant(plan, fire, now=T + timedelta(seconds=30), freeze=None) is None
    later_freeze = Freeze(T + timedelta(hours=1), None)
    assert recheck_at_instant(plan, fire, now=T + S, freeze=later_freeze) is None


def test_at_the_instant_late_or_past_deadline_or_newly_frozen_goes_back_to_the_tick() -> None:
    plan = plan_of(starting_deadline="30s")
    ahead = decide_ahead(plan, last_tick=T - S, nominal=T, local_tz=UTC)
    assert ahead is not None
    fire = ahead.fire
    why = recheck_at_instant(plan, fire, now=T + timedelta(seconds=31), freeze=None)
    assert why is not None and "deadline" in why
    no_deadline = plan_of()
    late = recheck_at_instant(
        no_deadline, fire, now=T + timedelta(seconds=61), freeze=None, late_tolerance=60 * S
    )
    assert late is not None and "late tolerance" in late
    # A freeze starting between the nominal time and the actual moment (gate 4 looks at
    # both instants, as the tick at the instant would).
    starts = Freeze(T + timedelta(milliseconds=500), None)
    frozen = recheck_at_instant(plan, fire, now=T + S, freeze=starts)
    assert frozen is not None and "freeze" in frozen
    assert decide_tick(plan, last_tick=T - S, now=T + S, local_tz=UTC, freeze=starts).fire is None
