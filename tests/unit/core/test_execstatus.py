"""The execution status machine (SPEC §4.3) and agent liveness (SPEC §4.1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kanade.core.execstatus import (
    DECISIONS,
    TRANSITIONS,
    can_transition,
    derive_status,
    progressed_status,
)
from kanade.core.fleet import ALIVE_WINDOW, STALE_WINDOW, agent_status
from kanade.core.statuses import ExecStatus


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


# --- the derived status (SPEC §4.3: re-projection is order-independent) -------------------

Event = tuple[str, str, datetime | None]  # (kind, status or pc, when)


@st.composite
def exec_events(draw: st.DrawFn) -> tuple[str, int, list[Event]]:
    """An exec's creation status, expected count and events in the order they happened."""
    created = draw(st.sampled_from([ExecStatus.PENDING, ExecStatus.AWAITING_APPROVAL]))
    expected = draw(st.integers(0, 4))
    events: list[Event] = []
    # Approvals and rejections exist only for execs created awaiting approval.
    possible = DECISIONS
    if created == ExecStatus.PENDING:
        possible = DECISIONS - {ExecStatus.PENDING, ExecStatus.REJECTED}
    for status in sorted(possible):
        if draw(st.booleans()):
            at = None if draw(st.booleans()) else NOW + timedelta(seconds=draw(st.integers(0, 9)))
            events.append(("decision", status, at))
    for i in range(draw(st.integers(0, 5))):
        fate = draw(st.sampled_from(["started", "finished", "both"]))
        if fate in ("started", "both"):
            events.append(("started", f"pc{i}", None))
        if fate in ("finished", "both"):
            events.append(("finished", f"pc{i}", None))
    return created, expected, events


def fold(created: str, expected: int, events: list[Event]) -> ExecStatus:
    """What the projection stores after ``events``, in this order: decisions are facts
    recorded once (the first wins), a pc counts as started or finished whatever its other
    events did, and the status is derived from what was gathered."""
    decisions: dict[str, datetime | None] = {}
    started: set[str] = set()
    finished: set[str] = set()
    for kind, what, at in events:
        if kind == "decision":
            decisions.setdefault(what, at)
        elif kind == "started":
            started.add(what)
        else:
            finished.add(what)
    rows = started | finished
    return derive_status(
        created, decisions, started=len(rows), finished=len(finished), expected=expected
    )


@given(exec_events(), st.randoms(use_true_random=False))
def test_the_derived_status_does_not_depend_on_the_order_of_events(
    drawn: tuple[str, int, list[Event]], rnd: object
) -> None:
    created, expected, events = drawn
    shuffled = list(events)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert fold(created, expected, shuffled) == fold(created, expected, events)
    assert fold(created, expected, events[::-1]) == fold(created, expected, events)


@given(exec_events())
def test_the_derived_status_is_reachable_from_the_creation_status(
    drawn: tuple[str, int, list[Event]],
) -> None:
    created, expected, events = drawn
    got = fold(created, expected, events)
    reachable, frontier = {created}, [created]
    while frontier:
        for nxt in TRANSITIONS[ExecStatus(frontier.pop())]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert got in reachable


@pytest.mark.parametrize(
    ("created", "decisions", "started", "finished", "want"),
    [
        ("pending", {}, 0, 0, "pending"),
        ("pending", {"cancelled": NOW}, 3, 3, "cancelled"),  # a cancel, then late results
        ("awaiting_approval", {}, 0, 0, "awaiting_approval"),
        ("awaiting_approval", {"pending": NOW}, 3, 3, "completed"),  # approved, all in
        ("awaiting_approval", {"pending": NOW}, 0, 0, "pending"),
        ("awaiting_approval", {"rejected": NOW}, 0, 0, "rejected"),
        # both recorded (a kill while awaiting, then the request rejected): the first
        ("awaiting_approval", {"rejected": NOW + timedelta(1), "cancelled": NOW}, 0, 0,
         "cancelled"),
        ("awaiting_approval", {"rejected": NOW, "cancelled": NOW + timedelta(1)}, 0, 0,
         "rejected"),
        ("pending", {"expired": NOW}, 0, 0, "expired"),
        ("pending", {"expired": NOW}, 1, 0, "running"),  # a late report revives it
        ("pending", {"expired": NOW}, 3, 3, "completed"),
        ("pending", {}, 2, 1, "running"),
    ],
)  # fmt: skip
def test_derive_status(
    created: str, decisions: dict[str, datetime], started: int, finished: int, want: str
) -> None:
    got = derive_status(created, decisions, started=started, finished=finished, expected=3)
    assert got == want


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
    ("created", "decided", "finished", "expected", "want"),
    [
        ("pending", (), 0, 0, "completed"),  # expected nobody: ends at its deadline
        ("pending", (), 3, 3, "completed"),
        ("pending", ("expired",), 2, 2, "completed"),
        ("pending", ("rejected",), 3, 3, "rejected"),  # an operator's end stays
        ("pending", ("cancelled",), 3, 3, "cancelled"),
        ("awaiting_approval", (), 0, 0, "awaiting_approval"),  # never sent
        ("pending", (), 1, 2, "running"),  # one pc still in flight
    ],
)
def test_an_ended_exec_completes(
    created: str, decided: tuple[str, ...], finished: int, expected: int, want: str
) -> None:
    decisions = {d: NOW for d in decided}
    started = expected - finished if want == "running" else 0
    got = derive_status(
        created, decisions, started=started, finished=finished, expected=expected, ended=True
    )
    assert got == want


def test_a_cleanly_stopped_agent_is_offline_at_once() -> None:
    assert agent_status(NOW, NOW, stopped=True) == "offline"
    assert agent_status(NOW, NOW, stopped=False) == "alive"
