"""The execution status machine (SPEC §4.3) as an explicit transition table.

The projector never *sets* a status: it derives the status an execution should
have from its recomputed counters and moves there only if the table allows the
move. So a redelivered or re-projected message can never walk an execution
backwards (completed → running) or out of a state an operator chose
(cancelled, rejected).
"""

from __future__ import annotations

from typing import Final, Literal

ExecStatus = Literal[
    "awaiting_approval", "pending", "running", "completed", "expired", "cancelled", "rejected"
]

TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "awaiting_approval": frozenset({"pending", "rejected", "cancelled", "expired"}),
    "pending": frozenset({"running", "completed", "expired", "cancelled"}),
    "running": frozenset({"completed", "cancelled"}),
    # Expired means "nothing reported within the hour"; an agent that was away
    # longer may still report, and the table lets that truth show.
    "expired": frozenset({"running", "completed"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
    "rejected": frozenset(),
}


def can_transition(current: str, new: str) -> bool:
    return new == current or new in TRANSITIONS.get(current, frozenset())


def progressed_status(current: str, *, started: int, finished: int, expected: int) -> str:
    """The status after results were counted: running at the first started or finished
    row, completed once finished rows reach the expected count (and at least one exists,
    so an exec that expected nobody does not complete before anyone answered)."""
    if finished > 0 and finished >= expected:
        wanted = "completed"
    elif started > 0 or finished > 0:
        wanted = "running"
    else:
        return current
    if can_transition(current, wanted):
        return wanted
    # completed is not reachable (e.g. from awaiting_approval): still try running.
    if wanted == "completed" and can_transition(current, "running"):
        return "running"
    return current
