"""Pure rollout maths (kanade.core.rollout): the wave split, progress, the halt rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kanade.core.models.waves import Wave
from kanade.core.rollout import (
    ResultView,
    decide_after_wave,
    exceeds,
    next_due_at,
    percent_count,
    settle_after_s,
    split_waves,
    wave_progress,
    wave_request_id,
)

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def pcs(n: int, prefix: str = "sim-") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def sizes(waves: list[Wave], target: list[str], groups: dict[str, list[str]] | None = None):
    return [len(p.pcs) for p in split_waves(waves, target, groups or {})]


def test_ten_forty_rest_over_twenty() -> None:
    waves = [Wave(percent=10), Wave(percent=40), Wave(percent=100)]
    plans = split_waves(waves, pcs(20), {})
    assert [len(p.pcs) for p in plans] == [2, 8, 10]
    assert [p.label for p in plans] == ["10%", "40%", "rest"]
    assert sorted(pc for p in plans for pc in p.pcs) == sorted(pcs(20))


def test_split_is_deterministic_and_order_independent() -> None:
    waves = [Wave(percent=25), Wave(percent=100)]
    a = split_waves(waves, pcs(13), {})
    b = split_waves(waves, list(reversed(pcs(13))), {})
    assert a == b
    assert a[0].pcs == tuple(sorted(pcs(13))[:4])  # ceil(3.25), sorted order


def test_percent_count_is_exact_and_bounded() -> None:
    assert percent_count(30, 10) == 3  # not 4 from 0.1 * 30 = 3.0000000000000004
    assert percent_count(18, 40) == 8  # 7.2 → 8
    assert percent_count(1, 1) == 1  # at least one while any remain
    assert percent_count(0, 50) == 0
    assert percent_count(7, 100) == 7
    with pytest.raises(ValueError):
        percent_count(5, 0)


def test_group_and_pc_waves_take_from_the_remaining_target() -> None:
    target = pcs(6)
    groups = {"sim-0": ["canary"], "sim-1": ["canary"], "sim-2": ["web"]}
    waves = [Wave(group="canary"), Wave(pcs=["sim-1", "sim-3", "ghost"]), Wave(percent=50)]
    plans = split_waves(waves, target, groups)
    assert plans[0].pcs == ("sim-0", "sim-1")
    assert plans[1].pcs == ("sim-3",)  # sim-1 already went; ghost is not in the target
    assert plans[1].not_in_target == ("ghost", "sim-1")
    assert plans[2].pcs == ("sim-2", "sim-4")  # ceil(50% of 3)
    # What no wave took is not missed: an implicit last wave with the last delay.
    assert plans[3].implicit and plans[3].pcs == ("sim-5",) and plans[3].kind == "rest"


def test_implicit_rest_keeps_the_last_delay() -> None:
    plans = split_waves([Wave(percent=10), Wave(percent=10, delay="5m")], pcs(10), {})
    assert [len(p.pcs) for p in plans] == [1, 1, 8]
    assert plans[2].delay_s == 300


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=300),
    percents=st.lists(
        st.floats(min_value=0.01, max_value=100, allow_nan=False), min_size=1, max_size=6
    ),
    group_every=st.integers(min_value=1, max_value=5),
)
def test_split_property_every_pc_exactly_once(
    n: int, percents: list[float], group_every: int
) -> None:
    target = pcs(n)
    groups = {pc: ["g"] for i, pc in enumerate(target) if i % group_every == 0}
    waves = [Wave(group="g")] + [Wave(percent=p) for p in percents]
    plans = split_waves(waves, target, groups)
    flat = [pc for p in plans for pc in p.pcs]
    assert len(flat) == len(set(flat)) == n  # no pc twice, none missed
    assert [p.index for p in plans] == list(range(len(plans)))
    remaining = n - len(plans[0].pcs)
    for plan, pct in zip(plans[1:], percents, strict=False):
        assert len(plan.pcs) == percent_count(remaining, pct)
        remaining -= len(plan.pcs)
    assert plans == split_waves(waves, list(reversed(target)), groups)


def row(state: str, exit_code: int | None = 0, skipped: bool = False, at: float = 1.0):
    return ResultView(state, exit_code, skipped, T0 + timedelta(seconds=at))


def test_wave_progress_counts_and_settles_from_the_data() -> None:
    wave = pcs(5)
    rows = {
        "sim-0": row("finished", 0, at=3),
        "sim-1": row("finished", 2, at=4),
        "sim-2": row("reaped", -1, at=9),
        "sim-3": row("finished", 124, skipped=True, at=2),
        "sim-4": row("in_flight", None),
    }
    p = wave_progress(wave, rows, dispatched_at=T0, settle_after=timedelta(60), now=T0)
    assert (p.succeeded, p.failed, p.skipped, p.running, p.pending) == (1, 2, 1, 1, 0)
    assert not p.settled
    rows["sim-4"] = row("finished", 0, at=7)
    p = wave_progress(wave, rows, dispatched_at=T0, settle_after=timedelta(60), now=T0)
    assert p.settled and p.settled_at == T0 + timedelta(seconds=9)  # last result, not now
    assert p.failure_rate == pytest.approx(2 / 5)  # skipped is not a failure


def test_wave_settles_at_the_horizon_with_missing_pcs() -> None:
    wave = pcs(4)
    rows = {"sim-0": row("finished", 0)}
    horizon = timedelta(seconds=settle_after_s(30.0))
    assert horizon == timedelta(seconds=30 + 120)
    before = wave_progress(
        wave, rows, dispatched_at=T0, settle_after=horizon, now=T0 + horizon - timedelta(1e-6)
    )
    assert not before.settled
    at = wave_progress(wave, rows, dispatched_at=T0, settle_after=horizon, now=T0 + horizon)
    assert at.settled and at.missing == 3 and at.settled_at == T0 + horizon
    assert at.failure_rate == pytest.approx(0.75)


def test_empty_wave_settles_at_dispatch() -> None:
    p = wave_progress([], {}, dispatched_at=T0, settle_after=timedelta(1), now=T0)
    assert p.settled and p.settled_at == T0 and p.failure_rate == 0.0


def test_halt_rule() -> None:
    assert exceeds(0.3, 0.2)
    assert not exceeds(0.2, 0.2)  # exactly the threshold is tolerated
    assert not exceeds(1.0, None)
    assert decide_after_wave(0, 3, 0.3, 0.2) == "halt"
    assert decide_after_wave(0, 3, 0.1, 0.2) == "next"
    assert decide_after_wave(2, 3, 0.9, 0.2) == "complete"  # nothing left to hold back
    assert next_due_at(T0, 5) == T0 + timedelta(seconds=5)
    assert wave_request_id("abc", 2) == "abc-w2"
