"""Every exec ends (SPEC §4.3): which expected pcs that never started are closed as
``no_result``, when, and why — the pure rule of :mod:`kanade.core.execends`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kanade.core.execends import (
    ExecView,
    RolloutView,
    WaveView,
    close_unstarted,
    superseding_exec,
)
from kanade.core.ids import no_result_id, result_id_for
from kanade.core.models.target import Target

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEADLINE = T0 + timedelta(minutes=5)
GRACE = timedelta(seconds=30)
DUE = DEADLINE + GRACE


def view(status: str = "running", pcs: tuple[str, ...] = ("a", "b", "c"), **kw: object) -> ExecView:
    fields: dict[str, object] = {
        "exec_id": "e1",
        "job_id": "patch",
        "status": status,
        "request_id": "r1",
        "expected_pcs": pcs,
        "deadline": DEADLINE,
    }
    fields.update(kw)
    return ExecView(**fields)  # type: ignore[arg-type]


def test_nothing_closes_before_the_deadline_plus_grace() -> None:
    closing = close_unstarted(view(), {"a"}, DUE - timedelta(microseconds=1), grace=GRACE)
    assert closing.rows == [] and not closing.ended
    assert closing.next_due == DUE


def test_at_the_deadline_plus_grace_every_unstarted_pc_is_closed_with_why() -> None:
    closing = close_unstarted(view(), {"a"}, DUE, grace=GRACE)
    assert [r.pc_id for r in closing.rows] == ["b", "c"]
    assert closing.ended
    row = closing.rows[0]
    assert row.at == DUE  # the due instant, not the wall clock: re-projection writes the same
    assert row.request_id == "r1"
    assert "never started by the exec's deadline 2026-03-01T12:05:00Z" in row.note
    assert "offline, stopped or gone" in row.note
    assert "a late result" in row.note


def test_a_later_pass_writes_the_same_rows() -> None:
    # Reaped a day late (a backend down, a re-projection): the same instants and notes.
    late = close_unstarted(view(), set(), DUE + timedelta(days=1), grace=GRACE).rows
    assert late == close_unstarted(view(), set(), DUE, grace=GRACE).rows


def test_a_superseded_pc_names_the_exec_that_replaced_it() -> None:
    closing = close_unstarted(view(), set(), DUE, grace=GRACE, superseded_by={"b": "e2"})
    notes = {r.pc_id: r.note for r in closing.rows}
    assert "(exec e2) replaced it in the queue" in notes["b"]
    assert "replaced" not in notes["a"]


def test_nothing_was_sent_while_awaiting_approval() -> None:
    closing = close_unstarted(view("awaiting_approval"), set(), DUE + timedelta(days=30))
    assert closing.rows == [] and not closing.ended


def test_a_rejected_exec_closes_every_pc_at_once() -> None:
    now = T0 + timedelta(seconds=1)  # long before the deadline
    closing = close_unstarted(view("rejected"), set(), now, grace=GRACE)
    assert [r.pc_id for r in closing.rows] == ["a", "b", "c"]
    assert all(r.at == now and "rejected in approval" in r.note for r in closing.rows)
    assert closing.ended  # nothing can start any more: it ended, long before its deadline


def test_a_killed_exec_closes_its_unstarted_pcs_at_once_but_not_the_running_ones() -> None:
    now = T0 + timedelta(seconds=1)
    closing = close_unstarted(view("cancelled"), {"a"}, now, grace=GRACE)
    assert [r.pc_id for r in closing.rows] == ["b", "c"]
    assert all("cancelled before this pc started" in r.note for r in closing.rows)


def rollout(status: str, *, second_sent: bool = False) -> RolloutView:
    return RolloutView(
        status=status,
        waves=(
            WaveView(0, "pcs:a,b", frozenset({"a", "b"}), "e1-w0", sent=True),
            WaveView(1, "rest", frozenset({"c"}), "e1-w1", sent=second_sent),
        ),
    )


def test_a_running_rollout_keeps_its_unsent_waves_open_past_the_deadline() -> None:
    closing = close_unstarted(view(rollout=rollout("running")), {"a"}, DUE, grace=GRACE)
    # b (sent in wave 0, never started) is closed; c may still be sent
    assert [(r.pc_id, r.request_id) for r in closing.rows] == [("b", "e1-w0")]
    assert not closing.ended


def test_a_halted_rollout_closes_its_unsent_pcs_at_the_deadline() -> None:
    ex = view(rollout=rollout("halted"))
    assert close_unstarted(ex, {"a", "b"}, DUE - timedelta(seconds=1), grace=GRACE).rows == []
    closing = close_unstarted(ex, {"a", "b"}, DUE, grace=GRACE)
    (row,) = closing.rows
    assert (row.pc_id, row.request_id, row.at) == ("c", "e1-w1", DUE)
    assert "rollout halted before its wave 1 (rest) went out" in row.note
    assert closing.ended


@pytest.mark.parametrize(("rollout_status", "exec_status"), [
    ("aborted", "cancelled"), ("rejected", "rejected"),
])
def test_an_aborted_or_rejected_rollout_closes_its_unsent_pcs_at_once(
    rollout_status: str, exec_status: str
) -> None:
    now = T0 + timedelta(seconds=1)
    ex = view(exec_status, rollout=rollout(rollout_status))
    closing = close_unstarted(ex, {"a"}, now, grace=GRACE)
    by_pc = {r.pc_id: r for r in closing.rows}
    assert by_pc["c"].at == now
    if rollout_status == "aborted":
        # b was sent before the abort: it may still start, so it waits for the deadline
        assert set(by_pc) == {"c"}
        assert "rollout was aborted before its wave 1 (rest)" in by_pc["c"].note
        assert closing.next_due == DUE
    else:
        assert set(by_pc) == {"b", "c"}


def test_a_pc_that_reported_is_never_closed() -> None:
    assert close_unstarted(view(), {"a", "b", "c"}, DUE, grace=GRACE).rows == []
    assert close_unstarted(view(), {"a", "b", "c"}, DUE, grace=GRACE).ended


def test_an_exec_that_expected_nobody_ends_at_its_deadline() -> None:
    assert close_unstarted(view("pending", pcs=()), set(), DUE, grace=GRACE).ended
    assert not close_unstarted(view("pending", pcs=()), set(), T0, grace=GRACE).ended


def test_supersession_needs_a_shared_address() -> None:
    mine = Target(pcs=["a"])
    assert superseding_exec(mine, "patch", "a", [("e2", Target(pcs=["b"]))]) is None
    assert superseding_exec(mine, "patch", "a", [("e2", Target(pcs=["a", "b"]))]) == "e2"
    groups = Target(groups=["web"])
    assert superseding_exec(groups, "patch", "x", [("e3", Target(groups=["web"]))]) == "e3"
    assert superseding_exec(groups, "patch", "x", [("e3", Target(groups=["db"]))]) is None
    fleet = Target(all=True)
    newer = [("e4", Target(pcs=["x"])), ("e5", Target(all=True))]
    assert superseding_exec(fleet, "patch", "x", newer) == "e5"  # the all subject


def test_a_no_result_id_never_collides_with_a_result_id() -> None:
    assert no_result_id("e1", "a") != result_id_for("e1", "a")
    assert no_result_id("e1", "a") == no_result_id("e1", "a")
    assert no_result_id("e1", "a") != no_result_id("e1", "b")
    assert len(no_result_id("e" * 128, "p" * 128)) <= 64  # fits results.result_id
