"""Dedup per mode (SPEC §3.6, §4.4): per_pc once / every, per_target, dispatch marks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kanade.core.scheduling import (
    DispatchMark,
    Plan,
    ReconcileTrigger,
    dispatch_mark_until,
    make_dispatch_mark,
    pc_decision,
    per_pc_decisions,
    per_pc_every,
    per_pc_once,
    per_pc_to_fire,
    per_target_decision,
    per_target_every,
    per_target_once,
    run_horizon,
)

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)
HOUR = timedelta(hours=1)


# --- per_pc --------------------------------------------------------------------------------
def test_per_pc_every_boundaries() -> None:
    mode = per_pc_every(HOUR)
    exactly = pc_decision(mode, "pc1", now=NOW, alive=True, last_success=NOW - HOUR)
    assert exactly.would_fire and exactly.reason == "every_elapsed"
    a_ms_before = pc_decision(mode, "pc1", now=NOW, alive=True, last_success=NOW - HOUR + MS)
    assert not a_ms_before.would_fire and a_ms_before.reason == "succeeded_recently"
    assert "due again at 2025-01-01T12:00:00.001000Z" in a_ms_before.detail
    never = pc_decision(mode, "pc1", now=NOW, alive=True, last_success=None)
    assert never.would_fire and never.reason == "never_succeeded"


def test_per_pc_once() -> None:
    mode = per_pc_once()
    assert pc_decision(mode, "pc1", now=NOW, alive=True, last_success=None).would_fire
    done = pc_decision(mode, "pc1", now=NOW, alive=True, last_success=NOW - timedelta(days=400))
    assert not done.would_fire and done.reason == "succeeded"


def test_per_pc_order_alive_then_dispatched_then_success() -> None:
    mode = per_pc_every(HOUR)
    mark = DispatchMark("pc1", NOW - timedelta(minutes=1), NOW + timedelta(minutes=5))
    offline = pc_decision(mode, "pc1", now=NOW, alive=False, last_success=None, mark=mark)
    assert offline.reason == "offline" and not offline.would_fire
    dispatched = pc_decision(mode, "pc1", now=NOW, alive=True, last_success=None, mark=mark)
    assert dispatched.reason == "dispatched" and not dispatched.would_fire
    assert "not fired again before 2025-01-01T12:05:00Z" in dispatched.detail


def test_dispatch_mark_expiry_formula_and_edge() -> None:
    until = dispatch_mark_until(
        NOW,
        jitter=timedelta(seconds=30),
        timeout=timedelta(minutes=10),
        retry_max=2,
        backoff=timedelta(seconds=20),
    )
    # 30s + 10m + 2 x (10m + 20s) + 60s
    assert until == NOW + timedelta(seconds=30 + 600 + 2 * 620 + 60)
    assert run_horizon(NOW, jitter=timedelta(0), timeout=timedelta(seconds=5)) == NOW + timedelta(
        seconds=65
    )
    mark = DispatchMark("pc1", NOW, until)
    mode = per_pc_once()
    assert not pc_decision(
        mode, "pc1", now=until - MS, alive=True, last_success=None, mark=mark
    ).would_fire
    assert pc_decision(mode, "pc1", now=until, alive=True, last_success=None, mark=mark).would_fire
    with pytest.raises(ValueError):
        run_horizon(NOW, jitter=timedelta(0), timeout=timedelta(0), retry_max=-1)


def test_dispatch_mark_cleared_by_a_result() -> None:
    mark = DispatchMark("pc1", NOW - timedelta(minutes=2), NOW + timedelta(minutes=5))
    assert mark.blocks(NOW)
    assert not mark.blocks(NOW, last_result_at=NOW - timedelta(minutes=1))
    assert mark.blocks(NOW, last_result_at=NOW - timedelta(minutes=3))  # an older result
    decision = pc_decision(
        per_pc_every(HOUR),
        "pc1",
        now=NOW,
        alive=True,
        last_success=NOW - timedelta(minutes=1),
        mark=mark,
        last_result_at=NOW - timedelta(minutes=1),
    )
    assert decision.reason == "succeeded_recently"


def test_make_dispatch_mark_uses_plan_jitter_and_retry() -> None:
    plan = Plan(
        "s1",
        ReconcileTrigger(per_pc_once()),
        jitter=timedelta(seconds=10),
        retry_max=1,
        retry_backoff=timedelta(seconds=5),
    )
    mark = make_dispatch_mark(
        plan, "pc9", dispatched_at=NOW, timeout=timedelta(seconds=30), occurrence_id="o"
    )
    assert mark.until == NOW + timedelta(seconds=10 + 30 + 35 + 60)
    assert (mark.pc_id, mark.occurrence_id) == ("pc9", "o")


def test_per_pc_decisions_for_preview() -> None:
    got = per_pc_decisions(
        per_pc_every(HOUR),
        ["a", "b", "c", "d"],
        now=NOW,
        alive={"a", "b", "c"},
        last_success={"b": NOW - timedelta(minutes=10), "c": NOW - 2 * HOUR},
        marks={"a": DispatchMark("a", NOW - timedelta(minutes=1), NOW + timedelta(minutes=1))},
    )
    assert [(d.pc_id, d.would_fire, d.reason) for d in got] == [
        ("a", False, "dispatched"),
        ("b", False, "succeeded_recently"),
        ("c", True, "every_elapsed"),
        ("d", False, "offline"),
    ]
    assert got[2].to_dict() == {
        "pc_id": "c",
        "would_fire": True,
        "reason": "every_elapsed",
        "detail": "last success at 2025-01-01T10:00:00Z, at least 1h ago",
    }


def test_per_pc_to_fire_is_the_tick_fast_path() -> None:
    fired = per_pc_to_fire(
        per_pc_every(HOUR),
        ["a", "b", "c", "d", "e"],
        now=NOW,
        alive={"a", "b", "c", "e"},
        last_success={"b": NOW - HOUR + MS, "c": NOW - HOUR, "e": NOW - HOUR},
        marks={"e": DispatchMark("e", NOW - HOUR, NOW + MS)},
        last_results={"e": NOW - 2 * HOUR},
    )
    assert fired == ["a", "c"]


def test_per_pc_rejects_target_mode() -> None:
    with pytest.raises(ValueError):
        pc_decision(per_target_once(), "a", now=NOW, alive=True, last_success=None)
    with pytest.raises(ValueError):
        per_pc_to_fire(per_target_once(), ["a"], now=NOW, alive={"a"}, last_success={})
    with pytest.raises(ValueError):
        per_pc_decisions(per_target_every(HOUR), ["a"], now=NOW, alive={"a"}, last_success={})
    with pytest.raises(ValueError):
        per_target_decision(per_pc_once(), ["a"], now=NOW, alive={"a"}, last_success={})


# --- per_target ----------------------------------------------------------------------------
MEMBERS = ["a", "b", "c"]


def test_per_target_fires_alive_members_when_nobody_succeeded() -> None:
    got = per_target_decision(
        per_target_once(), MEMBERS, now=NOW, alive={"a", "c"}, last_success={}
    )
    assert got.would_fire and got.reason == "no_member_succeeded"
    assert got.fire_pcs == ("a", "c")
    assert [p.reason for p in got.pcs] == ["no_member_succeeded", "offline", "no_member_succeeded"]


def test_per_target_succeeding_member_goes_offline() -> None:
    mode = per_target_every(HOUR)
    success = {"b": NOW - timedelta(minutes=30)}
    # b succeeded within every and is now offline: no fire, even though a and c are alive
    held = per_target_decision(mode, MEMBERS, now=NOW, alive={"a", "c"}, last_success=success)
    assert not held.would_fire and held.reason == "member_succeeded"
    assert "member b succeeded at 2025-01-01T11:30:00Z" in held.detail
    assert held.fire_pcs == ()
    # after every has passed since b's success: fires on the alive members
    later = NOW + timedelta(minutes=30)
    fired = per_target_decision(mode, MEMBERS, now=later, alive={"a", "c"}, last_success=success)
    assert fired.would_fire and fired.fire_pcs == ("a", "c")
    # a ms before every has passed: still held
    almost = per_target_decision(
        mode, MEMBERS, now=later - MS, alive={"a", "c"}, last_success=success
    )
    assert not almost.would_fire
    # nobody alive: no fire
    none = per_target_decision(mode, MEMBERS, now=later, alive=set(), last_success=success)
    assert not none.would_fire and none.reason == "no_member_alive"
    assert {p.reason for p in none.pcs} == {"offline"}


def test_per_target_once_any_success_ever_holds() -> None:
    got = per_target_decision(
        per_target_once(),
        MEMBERS,
        now=NOW,
        alive=set(MEMBERS),
        last_success={"c": NOW - timedelta(days=900)},
    )
    assert not got.would_fire and got.reason == "member_succeeded"


def test_per_target_dispatch_marks() -> None:
    marks = {
        "a": DispatchMark("a", NOW - timedelta(minutes=1), NOW + timedelta(minutes=9)),
        "c": DispatchMark("c", NOW - timedelta(minutes=1), NOW + timedelta(minutes=9)),
    }
    got = per_target_decision(
        per_target_once(), MEMBERS, now=NOW, alive={"a", "b", "c"}, last_success={}, marks=marks
    )
    assert got.fire_pcs == ("b",)
    all_marked = per_target_decision(
        per_target_once(), ["a", "c"], now=NOW, alive={"a", "c"}, last_success={}, marks=marks
    )
    assert not all_marked.would_fire and all_marked.reason == "dispatched"


def test_per_target_ignores_non_members_and_duplicates() -> None:
    got = per_target_decision(
        per_target_once(),
        ["a", "a", "b"],
        now=NOW,
        alive={"a", "zz"},
        last_success={"zz": NOW},
    )
    assert got.would_fire and got.fire_pcs == ("a",) and len(got.pcs) == 2
