"""Status enums and their transition tables (exec, rollout, wave, approval)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from enum import StrEnum

import pytest

from kanade.core.statuses import (
    APPROVAL_TRANSITIONS,
    EXEC_TRANSITIONS,
    ROLLOUT_TRANSITIONS,
    WAVE_TRANSITIONS,
    ApprovalState,
    ExecStatus,
    RolloutStatus,
    WaveState,
    approval_can_transition,
    can_transition,
    is_terminal,
    rollout_can_transition,
    sources,
    wave_can_transition,
)

TABLES: list[tuple[type[StrEnum], Mapping[StrEnum, frozenset[StrEnum]]]] = [
    (ExecStatus, EXEC_TRANSITIONS),  # type: ignore[list-item]
    (RolloutStatus, ROLLOUT_TRANSITIONS),  # type: ignore[list-item]
    (WaveState, WAVE_TRANSITIONS),  # type: ignore[list-item]
    (ApprovalState, APPROVAL_TRANSITIONS),  # type: ignore[list-item]
]


def test_values_are_the_stored_strings() -> None:
    # The database and the wire hold these exact strings.
    assert [s.value for s in ExecStatus] == [
        "awaiting_approval", "pending", "running", "completed", "expired", "cancelled", "rejected"
    ]  # fmt: skip
    assert {s.value for s in RolloutStatus} == {
        "awaiting_approval", "running", "halted", "completed", "aborted", "rejected"
    }  # fmt: skip
    assert {s.value for s in WaveState} == {
        "waiting", "dispatching", "dispatched", "settled", "cancelled"
    }  # fmt: skip
    assert {s.value for s in ApprovalState} == {"pending", "approved", "rejected", "expired"}
    stored: str = ExecStatus.PENDING
    assert stored == "pending" and f"{ExecStatus.PENDING}" == "pending"


@pytest.mark.parametrize(("enum", "table"), TABLES)
def test_every_table_covers_its_enum_and_names_only_its_states(
    enum: type[StrEnum], table: Mapping[StrEnum, frozenset[StrEnum]]
) -> None:
    assert set(table) == set(enum)
    for targets in table.values():
        assert targets <= set(enum)


def test_exec_machine() -> None:
    assert can_transition("pending", "running") and can_transition("expired", "completed")
    assert not can_transition("completed", "running")
    assert not can_transition("running", "pending")
    assert can_transition("cancelled", "cancelled")  # staying put is no move
    assert not can_transition("bogus", "running")
    assert sources(EXEC_TRANSITIONS, ExecStatus.CANCELLED) == (
        ExecStatus.AWAITING_APPROVAL, ExecStatus.PENDING, ExecStatus.RUNNING
    )  # fmt: skip


def test_rollout_machine() -> None:
    assert rollout_can_transition("awaiting_approval", "running")
    assert rollout_can_transition("awaiting_approval", "rejected")
    assert rollout_can_transition("running", "halted") and rollout_can_transition(
        "halted", "running"
    )
    assert rollout_can_transition("halted", "aborted") and rollout_can_transition(
        "running", "aborted"
    )
    assert not rollout_can_transition("awaiting_approval", "aborted")
    assert not rollout_can_transition("completed", "running")
    assert sources(ROLLOUT_TRANSITIONS, RolloutStatus.ABORTED) == (
        RolloutStatus.RUNNING, RolloutStatus.HALTED
    )  # fmt: skip


def test_wave_machine() -> None:
    path = ["waiting", "dispatching", "dispatched", "settled"]
    for current, new in itertools.pairwise(path):
        assert wave_can_transition(current, new)
        assert not wave_can_transition(new, current)
    assert wave_can_transition("waiting", "cancelled")
    assert not wave_can_transition("dispatched", "cancelled")


def test_approval_machine() -> None:
    for decided in ("approved", "rejected", "expired"):
        assert approval_can_transition("pending", decided)
        assert not approval_can_transition(decided, "pending")
        assert is_terminal(APPROVAL_TRANSITIONS, decided)
    assert not is_terminal(APPROVAL_TRANSITIONS, "pending")
