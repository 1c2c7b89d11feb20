"""The execution status machine (SPEC §4.3) and agent liveness (SPEC §4.1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kanade.core.execstatus import TRANSITIONS, can_transition, ended_status, progressed_status
from kanade.core.fleet import ALIVE_WINDOW, STALE_WINDOW, agent_status


def test_transition_table_names_only_known_states() -> None:
    for state, targets in TRANSITIONS.items():
        assert targets <= set(TRANSITIONS), state


@pytest.mark.parametrize("terminal", ["completed", "cancelled", "rejected"])
def test_terminal_states_never_move(terminal: str) -> None:
    assert progressed_status(terminal, started=5, finished=5, expected=1) == terminal
    for other in TRANSITIONS:
        assert can_transition(terminal, other) == (other == terminal)


@pytest.mark.parametrize(
    ("current", "started", "finished", "expected", "want"),
    [
        ("pending", 0, 0, 3, "pending"),  # nothing reported
        ("pending", 1, 0, 3, "running"),  # first EventStarted
        ("pending", 1, 1, 3, "running"),  # first result, more expected
        ("pending", 3, 3, 3, "completed"),  # all in, straight from pending
        ("running", 3, 2, 3, "running"),
        ("running", 3, 3, 3, "completed"),
        ("running", 4, 4, 3, "completed"),  # an unexpected extra pc also reported
        ("pending", 0, 0, 0, "pending"),  # expected nobody: not completed before anyone answers
        ("pending", 1, 1, 0, "completed"),
        ("expired", 1, 0, 2, "running"),  # a late report revives an expired exec
        ("expired", 2, 2, 2, "completed"),
        ("awaiting_approval", 1, 1, 1, "awaiting_approval"),  # never published: ignore
    ],
)
def test_progressed_status(
    current: str, started: int, finished: int, expected: int, want: str
) -> None:
    assert progressed_status(current, started=started, finished=finished, expected=expected) == want


def test_progress_never_walks_back() -> None:
    # Whatever the counters say (e.g. a re-projection in progress), completed stays.
    assert progressed_status("completed", started=0, finished=0, expected=3) == "completed"
    assert progressed_status("running", started=0, finished=0, expected=3) == "running"


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("age", "want"),
    [
        (timedelta(0), "alive"),
        (ALIVE_WINDOW, "alive"),
        (ALIVE_WINDOW + timedelta(seconds=1), "stale"),
        (STALE_WINDOW, "stale"),
        (STALE_WINDOW + timedelta(seconds=1), "offline"),
        (timedelta(days=3), "offline"),
        (-timedelta(minutes=5), "alive"),  # receiver clock stepped back
    ],
)
def test_agent_status(age: timedelta, want: str) -> None:
    assert agent_status(NOW - age, NOW) == want


def test_alive_window_is_two_minutes() -> None:
    assert timedelta(minutes=2) == ALIVE_WINDOW


@pytest.mark.parametrize(
    ("current", "finished", "expected", "want"),
    [
        ("pending", 0, 0, "completed"),  # expected nobody: ends at its deadline
        ("pending", 3, 3, "completed"),
        ("expired", 2, 2, "completed"),
        ("running", 2, 3, "running"),  # a pc still runs (in flight): not yet
        ("rejected", 3, 3, "rejected"),  # an operator's end stays
        ("cancelled", 3, 3, "cancelled"),
        ("awaiting_approval", 0, 0, "awaiting_approval"),  # not reachable from there
        ("completed", 3, 3, "completed"),
    ],
)
def test_ended_status(current: str, finished: int, expected: int, want: str) -> None:
    assert ended_status(current, finished=finished, expected=expected) == want


def test_a_cleanly_stopped_agent_is_offline_at_once() -> None:
    assert agent_status(NOW, NOW, stopped=True) == "offline"
    assert agent_status(NOW, NOW, stopped=False) == "alive"
