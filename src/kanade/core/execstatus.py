"""The execution status machine (SPEC §4.3): progress from counted results.

The projector never *sets* a status: it derives the status an execution should have from
its recomputed counters and moves there only if the transition table
(:data:`kanade.core.statuses.EXEC_TRANSITIONS`) allows the move. So a redelivered or
re-projected message can never walk an execution backwards (completed → running) or out of
a state an operator chose (cancelled, rejected).
"""

from __future__ import annotations

from typing import Final

from kanade.core.statuses import EXEC_TRANSITIONS, ExecStatus, can_transition

TRANSITIONS: Final = EXEC_TRANSITIONS
"""The exec transition table (alias kept for existing imports)."""


def progressed_status(current: str, *, started: int, finished: int, expected: int) -> str:
    """The status after results were counted: running at the first started or finished
    row, completed once finished rows reach the expected count (and at least one exists,
    so an exec that expected nobody does not complete before anyone answered)."""
    if finished > 0 and finished >= expected:
        wanted = ExecStatus.COMPLETED
    elif started > 0 or finished > 0:
        wanted = ExecStatus.RUNNING
    else:
        return current
    if can_transition(current, wanted):
        return wanted.value
    # completed is not reachable (e.g. from awaiting_approval): still try running.
    if wanted == ExecStatus.COMPLETED and can_transition(current, ExecStatus.RUNNING):
        return ExecStatus.RUNNING.value
    return current


def ended_status(current: str, *, finished: int, expected: int) -> str:
    """The status once the exec's deadline has passed and no expected pc is left waiting
    (SPEC §4.3, every exec ends): completed when finished rows cover the expected count —
    also when nobody was expected, which :func:`progressed_status` leaves alone — and the
    table allows it; otherwise unchanged (rejected and cancelled stay what they are)."""
    if finished >= expected and can_transition(current, ExecStatus.COMPLETED):
        return ExecStatus.COMPLETED.value
    return current


__all__ = ["TRANSITIONS", "ExecStatus", "can_transition", "ended_status", "progressed_status"]
