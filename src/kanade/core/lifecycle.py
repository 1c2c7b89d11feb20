"""When in-flight work is given up on (SPEC §4.3): result and exec expiry. Pure: the clock
is an argument.

The two deadlines and why they use the backend's clock: docs/backend.md, "When in-flight
work is given up on".
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Final

from kanade.core.instants import format_instant
from kanade.core.signing import COMMAND_LIFETIME
from kanade.core.statuses import ExecStatus

MIN_GRACE: Final = timedelta(minutes=2)
UNKNOWN_TIMEOUT_TTL: Final = timedelta(hours=24)
PENDING_EXEC_TTL: Final = timedelta(hours=1)
NO_START_GRACE: Final = MIN_GRACE
"""How long after an exec's deadline a pc that never started it is given up on: the agent
checks the deadline on its own clock, which may run behind the backend's, and its
EventStarted takes a moment to arrive."""

# The far end of time, timezone-aware, for clamping.
END_OF_TIME: Final = datetime.max.replace(tzinfo=UTC)

REAPED_EXIT_CODE: Final = -1


def _clamped_add(start: datetime, seconds: float) -> datetime:
    room = (END_OF_TIME - start).total_seconds()
    if seconds >= room:
        return END_OF_TIME
    return start + timedelta(seconds=seconds)


def result_ttl_s(timeout_s: float | None) -> float:
    """Seconds from ``recorded_at`` until an unfinished row is reaped.

    A missing, negative or NaN timeout is "unknown" (24 h); an infinite one stays
    infinite and is clamped by the caller.
    """
    if timeout_s is None or math.isnan(timeout_s) or timeout_s < 0:
        return UNKNOWN_TIMEOUT_TTL.total_seconds()
    return timeout_s + max(MIN_GRACE.total_seconds(), timeout_s / 2)


def result_expires_at(recorded_at: datetime, timeout_s: float | None) -> datetime:
    """The instant an in-flight result row started at ``recorded_at`` is reaped."""
    return _clamped_add(recorded_at, result_ttl_s(timeout_s))


def result_is_due(expires_at: datetime, now: datetime) -> bool:
    """True from ``expires_at`` on (inclusive)."""
    return now >= expires_at


def exec_expires_at(created_at: datetime) -> datetime:
    """The instant a still-pending exec created at ``created_at`` expires."""
    return _clamped_add(created_at, PENDING_EXEC_TTL.total_seconds())


def exec_is_due(status: str, created_at: datetime, now: datetime) -> bool:
    """A ``pending`` exec with nothing reported is expired from one hour after creation."""
    return status == ExecStatus.PENDING and now >= exec_expires_at(created_at)


def pending_exec_cutoff(now: datetime) -> datetime:
    """Execs created at or before this instant are due if still pending (for SQL filters)."""
    return now - PENDING_EXEC_TTL


def reaped_note(expires_at: datetime, timeout_s: float | None) -> str:
    """Why a row was closed without a result; deterministic (no wall clock in it), so a
    re-projection followed by a reap reproduces the same text."""
    known = "unknown" if timeout_s is None else f"{timeout_s:g}s"
    when = format_instant(expires_at)
    return (
        f"reaped: no result by {when} (timeout {known} plus grace); "
        "a late result from the agent will replace this"
    )


def exec_deadline(
    issued_at: datetime, *, expires_at: datetime | None, deadline_at: datetime | None
) -> datetime:
    """The instant after which no pc starts a command issued at ``issued_at``: its starting
    deadline (``deadline_at``) or its signed expiry (the agent refuses it after that; the
    command stream drops it), whichever comes first (SPEC §4.3)."""
    end = expires_at if expires_at is not None else _clamped_add(
        issued_at, COMMAND_LIFETIME.total_seconds()
    )
    return end if deadline_at is None else min(end, deadline_at)


def fallback_exec_deadline(created_at: datetime) -> datetime:
    """The deadline of an exec whose row does not know one (written before deadlines were
    recorded): no command outlives the command lifetime."""
    return _clamped_add(created_at, COMMAND_LIFETIME.total_seconds())


def fallback_created_cutoff(due_before: datetime) -> datetime:
    """Execs without a recorded deadline created at or before this instant have reached
    their :func:`fallback_exec_deadline` by ``due_before`` (for SQL filters)."""
    return due_before - COMMAND_LIFETIME


def no_start_due(deadline: datetime, grace: timedelta = NO_START_GRACE) -> datetime:
    """When an expected pc that never started an exec with ``deadline`` is closed."""
    return _clamped_add(deadline, max(0.0, grace.total_seconds()))
