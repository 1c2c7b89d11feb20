"""The execution status machine (SPEC §4.3): the status an exec's facts give it.

Two rules live here. :func:`derive_status` is what the projection stores: the status as a
pure function of the exec's *facts* — how it was created, the decisions recorded for it
(approved, rejected, cancelled, expired) and its counted results — so the order in which
those facts reach the database (a replay of two streams, the reaper's clock) can never
change the outcome (§4.3 "re-projection is order-independent"). A decision is recorded only
when the transition table allowed it live (:data:`kanade.core.statuses.EXEC_TRANSITIONS`,
checked by the store before it records one), so deriving from the set of facts gives what
the live order gave. :func:`progressed_status` is the older step-by-step form, kept for
callers that move one status along the table. Why: docs/backend.md, "Exec status".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final

from kanade.core.statuses import EXEC_TRANSITIONS, ExecStatus, can_transition

DECISIONS: Final = frozenset(
    {ExecStatus.PENDING, ExecStatus.REJECTED, ExecStatus.CANCELLED, ExecStatus.EXPIRED}
)
"""The statuses a recorded decision stands for: ``pending`` = approved, ``rejected``,
``cancelled`` (an operator's kill or a rollout's abort) and ``expired`` (the reaper)."""

_ENDS: Final = (ExecStatus.CANCELLED, ExecStatus.REJECTED)


def _when(at: datetime | None, rank: int) -> tuple[bool, float, int]:
    """Sort key of a decision: dated ones first, by time, then by ``rank``."""
    return (at is None, 0.0 if at is None else at.timestamp(), rank)


def derive_status(
    created: str,
    decisions: Mapping[str, datetime | None],
    *,
    started: int,
    finished: int,
    expected: int,
    ended: bool = False,
) -> ExecStatus:
    """The status of an exec created as ``created`` (``pending`` or ``awaiting_approval``)
    with ``decisions`` (status → when it was decided) and these result counts; ``ended``:
    nothing more will start (its deadline passed; pcs that never started have ``no_result``
    rows).

    * a cancel or a rejection ends it, whatever else arrives (results of scripts already
      running included); when both were recorded, the earlier one (a tie: cancelled);
    * created awaiting approval and not approved: it waits (nothing was sent);
    * then progress: completed when finished results reach the expected count (and at
      least one exists), running at the first started or finished row;
    * ended (SPEC §4.3, every exec ends) with every expected pc finished: completed — also
      one that expected nobody; a pc still in flight keeps it running until its own row
      finishes or is reaped;
    * no result at all: ``expired`` once the reaper recorded that, else ``pending``.
    """
    ends = [s for s in _ENDS if s in decisions]
    if ends:
        return min(ends, key=lambda s: _when(decisions[s], _ENDS.index(s)))
    if created == ExecStatus.AWAITING_APPROVAL and ExecStatus.PENDING not in decisions:
        return ExecStatus.AWAITING_APPROVAL
    if finished >= expected and (ended or finished > 0):
        return ExecStatus.COMPLETED
    if started > 0 or finished > 0:
        return ExecStatus.RUNNING
    if ExecStatus.EXPIRED in decisions:
        return ExecStatus.EXPIRED
    return ExecStatus.PENDING

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


__all__ = [
    "DECISIONS",
    "TRANSITIONS",
    "ExecStatus",
    "can_transition",
    "derive_status",
    "progressed_status",
]
