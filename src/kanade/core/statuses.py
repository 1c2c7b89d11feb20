"""Every status kanade stores, as enums, each with its one transition table.

The values are the strings in the database and on the wire (``StrEnum``: a member compares
and hashes equal to its text), so SQL filters and stored rows are unchanged. A store or
service never *assigns* a status: it asks :func:`can_transition` (or the machine's own
helper) whether the move is allowed from where the row is now, and writes with the current
status in its ``WHERE`` so a concurrent move loses cleanly. The exec machine's progress rule
is in :mod:`kanade.core.execstatus`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final, TypeVar


class ExecStatus(StrEnum):
    """An execution (SPEC §4.3)."""

    AWAITING_APPROVAL = "awaiting_approval"
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


class RolloutStatus(StrEnum):
    """A rollout: a job sent wave by wave (SPEC §4.6)."""

    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    HALTED = "halted"
    COMPLETED = "completed"
    ABORTED = "aborted"
    REJECTED = "rejected"


class WaveState(StrEnum):
    """One wave of a rollout."""

    WAITING = "waiting"
    DISPATCHING = "dispatching"
    DISPATCHED = "dispatched"
    SETTLED = "settled"
    CANCELLED = "cancelled"


class ApprovalState(StrEnum):
    """A request for a second person's approval of an exec."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class DeliveryStatus(StrEnum):
    """One notification to one webhook (docs/notifications.md)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


S = TypeVar("S", bound=StrEnum)

_E = ExecStatus
EXEC_TRANSITIONS: Final[Mapping[ExecStatus, frozenset[ExecStatus]]] = {
    _E.AWAITING_APPROVAL: frozenset({_E.PENDING, _E.REJECTED, _E.CANCELLED, _E.EXPIRED}),
    _E.PENDING: frozenset({_E.RUNNING, _E.COMPLETED, _E.EXPIRED, _E.CANCELLED}),
    _E.RUNNING: frozenset({_E.COMPLETED, _E.CANCELLED}),
    # Expired means "nothing reported within the hour"; an agent that was away longer may
    # still report, and the table lets that truth show.
    _E.EXPIRED: frozenset({_E.RUNNING, _E.COMPLETED}),
    _E.COMPLETED: frozenset(),
    _E.CANCELLED: frozenset(),
    _E.REJECTED: frozenset(),
}

_R = RolloutStatus
ROLLOUT_TRANSITIONS: Final[Mapping[RolloutStatus, frozenset[RolloutStatus]]] = {
    # approved → the first wave is due; rejected or expired approval → never starts
    _R.AWAITING_APPROVAL: frozenset({_R.RUNNING, _R.REJECTED}),
    # the last wave settled → completed; a wave over its failure rate → halted;
    # an operator's abort → aborted
    _R.RUNNING: frozenset({_R.HALTED, _R.COMPLETED, _R.ABORTED}),
    # an operator resumes or aborts a halted rollout
    _R.HALTED: frozenset({_R.RUNNING, _R.ABORTED}),
    _R.COMPLETED: frozenset(),
    _R.ABORTED: frozenset(),
    _R.REJECTED: frozenset(),
}

_W = WaveState
WAVE_TRANSITIONS: Final[Mapping[WaveState, frozenset[WaveState]]] = {
    # due → claimed by the runner; an abort or a rejected rollout → cancelled
    _W.WAITING: frozenset({_W.DISPATCHING, _W.CANCELLED}),
    # a stale claim is taken over (dispatching → dispatching, allowed as "no move");
    # every command published → dispatched
    _W.DISPATCHING: frozenset({_W.DISPATCHED}),
    # its results are in (or their time is up) → settled with a verdict
    _W.DISPATCHED: frozenset({_W.SETTLED}),
    _W.SETTLED: frozenset(),
    _W.CANCELLED: frozenset(),
}

_A = ApprovalState
APPROVAL_TRANSITIONS: Final[Mapping[ApprovalState, frozenset[ApprovalState]]] = {
    # an approver decides. An unanswered request past its deadline is *reported* expired;
    # the sweeper stores it as rejected with reason "expired" (services/approvals.py).
    _A.PENDING: frozenset({_A.APPROVED, _A.REJECTED, _A.EXPIRED}),
    _A.APPROVED: frozenset(),
    _A.REJECTED: frozenset(),
    _A.EXPIRED: frozenset(),
}


_D = DeliveryStatus
DELIVERY_TRANSITIONS: Final[Mapping[DeliveryStatus, frozenset[DeliveryStatus]]] = {
    # a 2xx answer → delivered; the last allowed attempt failed → failed (a failed attempt
    # before that stays pending, due again after its backoff)
    _D.PENDING: frozenset({_D.DELIVERED, _D.FAILED}),
    _D.DELIVERED: frozenset(),
    # an operator asks for it again (kanade notify retry)
    _D.FAILED: frozenset({_D.PENDING}),
}


def allows(table: Mapping[S, frozenset[S]], current: str, new: str) -> bool:
    """Whether ``table`` allows ``current → new``. Staying put is always allowed (a
    redelivered record is a no-op, never an error); an unknown ``current`` allows nothing."""
    if new == current:
        return True
    targets = table.get(current)  # type: ignore[call-overload]
    return targets is not None and new in targets


def can_transition(current: str, new: str) -> bool:
    """The exec machine: whether an execution may move from ``current`` to ``new``."""
    return allows(EXEC_TRANSITIONS, current, new)


def rollout_can_transition(current: str, new: str) -> bool:
    return allows(ROLLOUT_TRANSITIONS, current, new)


def wave_can_transition(current: str, new: str) -> bool:
    return allows(WAVE_TRANSITIONS, current, new)


def approval_can_transition(current: str, new: str) -> bool:
    return allows(APPROVAL_TRANSITIONS, current, new)


def delivery_can_transition(current: str, new: str) -> bool:
    return allows(DELIVERY_TRANSITIONS, current, new)


def is_terminal(table: Mapping[S, frozenset[S]], status: str) -> bool:
    """A status with no way out (an unknown one counts as terminal: nothing may move it)."""
    return not table.get(status)  # type: ignore[call-overload]


def sources(table: Mapping[S, frozenset[S]], new: S) -> tuple[S, ...]:
    """Every status ``new`` may be reached from (in table order), for ``WHERE status IN``."""
    return tuple(s for s, targets in table.items() if new in targets)


__all__ = [
    "APPROVAL_TRANSITIONS",
    "DELIVERY_TRANSITIONS",
    "EXEC_TRANSITIONS",
    "ROLLOUT_TRANSITIONS",
    "WAVE_TRANSITIONS",
    "ApprovalState",
    "DeliveryStatus",
    "ExecStatus",
    "RolloutStatus",
    "WaveState",
    "allows",
    "approval_can_transition",
    "can_transition",
    "delivery_can_transition",
    "is_terminal",
    "rollout_can_transition",
    "sources",
    "wave_can_transition",
]
