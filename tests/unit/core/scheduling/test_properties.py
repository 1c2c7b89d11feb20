"""Property tests of the scheduling core (hypothesis)."""

from __future__ import annotations

import dataclasses
import itertools
import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kanade.core.models.constraints import TimeWindow
from kanade.core.models.when import DaySpec
from kanade.core.scheduling import (
    CalendarTrigger,
    ClaimTable,
    CronTrigger,
    DispatchMark,
    Plan,
    decide_tick,
    fires_between,
    gate_reason,
    next_fire,
    next_fires,
    next_gated_fires,
    occurrence_id,
    parse_occurrence_id,
    pc_decision,
    per_pc_decisions,
    per_pc_every,
    per_pc_once,
    per_pc_to_fire,
    prev_fire,
    request_id_for,
    resolve_wall,
    schedule_set_version,
)
from kanade.core.scheduling.timezones import is_nonexistent, wall_of
from kanade.core.validation import parse_schedule

ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "utc",
]
CRONS = [
    "0 * * * *",
    "*/15 * * * *",
    "30 2 * * *",
    "0,30 1-3 * * *",
    "45 2 * * 0",
    "0 0 1 * *",
    "0 9 * * mon-fri",
    "0 12 * * 5L",
    "0 8 * * 2#2",
    "30 0 1,2 * * *",
    "0 */7 * * * *",
]
FAR = ZoneInfo("Pacific/Kiritimati")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
day_specs = st.one_of(
    st.builds(DaySpec, st.integers(0, 6)),
    st.builds(DaySpec, st.integers(0, 6), nth=st.integers(1, 5)),
    st.builds(DaySpec, st.integers(0, 6), last=st.just(True)),
)
# times biased towards the DST hours
times = st.one_of(
    st.builds(time, st.integers(0, 3), st.sampled_from([0, 1, 15, 30, 45, 59])),
    st.builds(time, st.integers(0, 23), st.integers(0, 59)),
)
calendar_plans = st.builds(
    lambda at, days, tz: Plan("p", CalendarTrigger(at, tuple(days)), tz=tz),
    times,
    st.lists(day_specs, max_size=3),
    st.sampled_from(ZONES),
)
cron_plans = st.builds(
    lambda expr, tz: Plan("p", CronTrigger(expr), tz=tz),
    st.sampled_from(CRONS),
    st.sampled_from(ZONES),
)
plans = st.one_of(calendar_plans, cron_plans)


@SETTINGS
@given(plans, instants)
def test_next_fire_is_strictly_after_and_fires_increase(plan: Plan, after: datetime) -> None:
    fires = next_fires(plan, after, FAR, 6)
    assert fires, "every generated plan fires within its scan horizon"
    assert fires[0] > after
    assert all(a < b for a, b in itertools.pairwise(fires))
    assert all(f.tzinfo is UTC for f in fires)


@SETTINGS
@given(plans, instants)
def test_next_and_prev_agree(plan: Plan, after: datetime) -> None:
    nxt = next_fire(plan, after, FAR)
    assert nxt is not None
    assert prev_fire(plan, nxt, FAR) == nxt
    # nothing fires in (after, nxt)
    before = prev_fire(plan, nxt - timedelta(microseconds=1), FAR)
    assert before is None or before <= after


@SETTINGS
@given(plans, instants)
def test_fires_are_never_in_a_gap_nor_a_second_pass(plan: Plan, after: datetime) -> None:
    tz = plan.zone(FAR)
    for fire in next_fires(plan, after, FAR, 4):
        wall = wall_of(fire, tz)
        assert not is_nonexistent(wall, tz)
        # the fire is the first occurrence of its wall-clock reading
        assert resolve_wall(wall, tz) == fire


@SETTINGS
@given(calendar_plans, instants)
def test_calendar_fires_at_its_time_or_right_after_a_gap(plan: Plan, after: datetime) -> None:
    trigger = plan.trigger
    assert isinstance(trigger, CalendarTrigger)
    tz = plan.zone(FAR)
    fire = next_fire(plan, after, FAR)
    assert fire is not None
    local = wall_of(fire, tz)
    assert trigger.fires_on(local.date())
    intended = datetime.combine(local.date(), trigger.at)
    if local != intended:
        # moved forward by a gap: that day's intended wall time did not exist
        assert is_nonexistent(intended, tz)
        assert local > intended


@SETTINGS
@given(
    plans,
    instants,
    st.builds(TimeWindow, times, times).filter(lambda w: w.start != w.end),
    st.lists(st.dates(date(2020, 1, 1), date(2031, 1, 1)), max_size=5),
)
def test_gated_fires_respect_window_and_skip_dates(
    plan: Plan, after: datetime, window: TimeWindow, skips: list[date]
) -> None:
    gated = Plan(
        plan.schedule_id, plan.trigger, tz=plan.tz, window=window, skip_dates=frozenset(skips)
    )
    tz = gated.zone(FAR)
    for fire in next_gated_fires(gated, after, FAR, 3, max_scan=300):
        local = fire.astimezone(tz)
        assert window.contains(local.time())
        assert local.date() not in gated.skip_dates
        assert gate_reason(gated, fire, now=fire, local_tz=FAR) is None


slugs = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)


@SETTINGS
@given(st.lists(st.tuples(slugs, instants), min_size=1, max_size=30, unique=True))
def test_occurrence_ids_unique_and_stable(pairs: list[tuple[str, datetime]]) -> None:
    ids = [occurrence_id(s, n) for s, n in pairs]
    assert len(set(ids)) == len(pairs)
    assert ids == [occurrence_id(s, n) for s, n in pairs]
    for (sid, nominal), occ in zip(pairs, ids, strict=True):
        assert parse_occurrence_id(occ) == (sid, nominal)
        # the same instant written in another zone names the same occurrence
        assert occurrence_id(sid, nominal.astimezone(ZoneInfo("Asia/Kolkata"))) == occ
    request_ids = {request_id_for(occ, "pc1") for occ in ids}
    assert len(request_ids) == len(ids)


schedule_docs = st.builds(
    lambda sid, at, tz, jitter: {
        "id": sid,
        "job_id": "j",
        "when": {"calendar": {"at": f"{at.hour:02d}:{at.minute:02d}"}},
        "target": {"all": True},
        "runs_on": "agent",
        "tz": tz,
        "jitter": f"{jitter}s",
    },
    slugs,
    times,
    st.sampled_from(ZONES),
    st.integers(0, 120),
)


@SETTINGS
@given(st.lists(schedule_docs, max_size=8), st.randoms(use_true_random=False))
def test_schedule_set_version_is_order_independent(
    docs: list[dict[str, object]], rnd: random.Random
) -> None:
    schedules = [parse_schedule(d) for d in docs]
    shuffled = list(schedules)
    rnd.shuffle(shuffled)
    assert schedule_set_version(schedules) == schedule_set_version(shuffled)
    if schedules:
        changed = parse_schedule({**docs[0], "jitter": "121s"})
        assert schedule_set_version([changed, *schedules[1:]]) != schedule_set_version(schedules)


@SETTINGS
@given(
    st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=30)),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=60)),
)
def test_per_pc_every_rearms_exactly_at_every(every: timedelta, age: timedelta) -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    got = pc_decision(per_pc_every(every), "pc", now=now, alive=True, last_success=now - age)
    assert got.would_fire is (age >= every)


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["claim", "finish"]),
            st.sampled_from(["s1", "s2"]),
            st.sampled_from(["o1", "o2", "o3"]),
            st.integers(0, 400),
        ),
        max_size=40,
    )
)
def test_claims_never_two_live_owners(ops: list[tuple[str, str, str, int]]) -> None:
    table = ClaimTable()
    now = datetime(2025, 1, 1, tzinfo=UTC)
    for op, sid, owner, advance in ops:
        now += timedelta(seconds=advance)
        before = table.get(sid)
        if op == "claim":
            attempt = table.try_claim(sid, owner, now=now, until=now + timedelta(seconds=300))
            live_before = before is not None and before.live(now)
            assert attempt.granted is not live_before
            if not attempt.granted:
                assert table.get(sid) == before
        else:
            finish = table.finish(sid, owner, ran=True, exit_code=0)
            assert finish.released is (before is not None and before.owner == owner)
            if not finish.released:
                assert table.get(sid) == before


NOW = datetime(2025, 6, 1, tzinfo=UTC)
pc_states = st.dictionaries(
    st.sampled_from([f"pc{i}" for i in range(12)]),
    st.tuples(
        st.booleans(),  # alive
        st.none() | st.integers(0, 7200),  # seconds since last success
        st.none() | st.tuples(st.integers(0, 600), st.integers(-300, 600)),  # mark ages
        st.none() | st.integers(0, 900),  # seconds since last result
    ),
)


PcState = tuple[bool, int | None, tuple[int, int] | None, int | None]


@SETTINGS
@given(pc_states, st.booleans())
def test_fast_per_pc_path_matches_decisions(states: dict[str, PcState], once: bool) -> None:
    mode = per_pc_once() if once else per_pc_every(timedelta(hours=1))
    sec = timedelta(seconds=1)
    alive = {pc for pc, state in states.items() if state[0]}
    successes = {pc: NOW - st_[1] * sec for pc, st_ in states.items() if st_[1] is not None}
    marks = {
        pc: DispatchMark(pc, NOW - m[0] * sec, NOW + m[1] * sec)
        for pc, (_, _, m, _) in states.items()
        if m is not None
    }
    results = {pc: NOW - st_[3] * sec for pc, st_ in states.items() if st_[3] is not None}
    pcs = sorted(states)
    decided = per_pc_decisions(
        mode, pcs, now=NOW, alive=alive, last_success=successes, marks=marks, last_results=results
    )
    fast = per_pc_to_fire(
        mode, pcs, now=NOW, alive=alive, last_success=successes, marks=marks, last_results=results
    )
    assert fast == [d.pc_id for d in decided if d.would_fire]
    assert all(d.detail for d in decided)  # every reason renders


# --- catchup: an outage is never "on time" (issue #14 item 5) ------------------------------
outage_cases = st.tuples(
    plans,
    instants,  # last_tick
    st.integers(1, 3 * 86400 * 1000),  # ms from last_tick to now
    st.integers(-86400 * 1000, 86400 * 1000),  # ms from last_tick to up_since
    st.integers(0, 600),  # late tolerance, s
)


@SETTINGS
@given(outage_cases, st.sampled_from(["skip", "once"]))
def test_catchup_never_treats_an_outage_as_on_time(
    case: tuple[Plan, datetime, int, int, int], catchup: str
) -> None:
    base, last_tick, span_ms, up_ms, tolerance_s = case
    plan = dataclasses.replace(base, catchup=catchup)  # type: ignore[arg-type]
    now = last_tick + timedelta(milliseconds=span_ms)
    up_since = last_tick + timedelta(milliseconds=up_ms)
    tolerance = timedelta(seconds=tolerance_s)
    out = decide_tick(plan, last_tick=last_tick, now=now, local_tz=FAR,
                      late_tolerance=tolerance, up_since=up_since)  # fmt: skip
    latest = fires_between(plan, last_tick, now, FAR, limit=1).latest
    if latest is None:
        assert out.decisions == ()
        return
    on_time = latest >= up_since and now - latest <= tolerance
    if catchup == "skip":
        # Fires only what the scheduler was up for and decided within the tolerance;
        # everything else due is recorded as missed.
        assert (out.fire is not None) == on_time
        if out.fire is not None:
            assert out.fire.nominal >= up_since and not out.fire.caught_up
        assert out.fire is None or out.fire.nominal == latest
        assert latest in out.missed or out.fire is not None
    else:
        # `once`: the latest due occurrence always runs, as a catch-up when it was not
        # on time.
        assert out.fire is not None and out.fire.nominal == latest
        assert out.fire.caught_up == (not on_time)
    # Up since before the span: exactly the decisions of a scheduler up throughout.
    if up_since <= last_tick:
        assert out == decide_tick(plan, last_tick=last_tick, now=now, local_tz=FAR,
                                  late_tolerance=tolerance)  # fmt: skip
