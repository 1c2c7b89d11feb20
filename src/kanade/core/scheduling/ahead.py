"""Fires decided ahead of their nominal instant (SPEC §4.4, §10.2), and what is looked at
again when the instant comes.

What may be decided early and what may not: docs/scheduling-core.md, "Deciding a fire
ahead"; the scheduler side: docs/scheduler.md, "Prepared ahead".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from kanade.core.freeze import Freeze
from kanade.core.instants import format_instant
from kanade.core.scheduling.decisions import Fire
from kanade.core.scheduling.gates import (
    DEFAULT_LATE_TOLERANCE,
    deadline_at,
    deadline_passed,
    decide_tick,
)
from kanade.core.scheduling.lowering import Plan
from kanade.core.scheduling.timezones import to_utc


@dataclass(frozen=True)
class AheadFire:
    """A fire decided ahead, with the tick state to adopt once it has gone out."""

    fire: Fire
    last_tick: datetime
    """The schedule's ``last_tick`` after the fire (its nominal time)."""
    next_fire: datetime | None
    """The next ungated fire after it."""


def decide_ahead(
    plan: Plan,
    *,
    last_tick: datetime,
    nominal: datetime,
    local_tz: tzinfo,
    freeze: Freeze | None = None,
    late_tolerance: timedelta = DEFAULT_LATE_TOLERANCE,
) -> AheadFire | None:
    """Decide the occurrence at ``nominal`` as a tick at exactly ``nominal`` would; the fire
    when that is one on-time :class:`Fire` of that occurrence and nothing else, else None.

    Reconcile polls are never decided ahead: which pcs they fire depends on results and
    heartbeats up to the poll itself.
    """
    if plan.is_reconcile:
        return None
    nominal = to_utc(nominal)
    outcome = decide_tick(
        plan,
        last_tick=last_tick,
        now=nominal,
        local_tz=local_tz,
        freeze=freeze,
        late_tolerance=late_tolerance,
    )
    if len(outcome.decisions) != 1:
        return None
    (decision,) = outcome.decisions
    if not isinstance(decision, Fire) or decision.nominal != nominal or decision.caught_up:
        return None
    return AheadFire(decision, outcome.last_tick, outcome.next_fire)


def recheck_at_instant(
    plan: Plan,
    fire: Fire,
    *,
    now: datetime,
    freeze: Freeze | None,
    late_tolerance: timedelta = DEFAULT_LATE_TOLERANCE,
) -> str | None:
    """Why a fire decided ahead must not go out as prepared at ``now`` (a sentence), or
    None. ``freeze`` is the freeze the fire was decided with (the caller has verified it
    did not change since)."""
    now = to_utc(now)
    late = now - fire.nominal
    if late > late_tolerance:
        return (
            f"{late.total_seconds():.3f}s late, beyond the late tolerance of "
            f"{late_tolerance.total_seconds():g}s: re-decided with catchup"
        )
    if deadline_passed(plan, fire.nominal, now):
        limit = deadline_at(plan, fire.nominal)
        assert limit is not None
        return f"starting deadline {format_instant(limit)} passed"
    if freeze is not None and freeze.covers(now):
        return f"now is inside the {freeze.describe()}"
    return None


__all__ = ["AheadFire", "decide_ahead", "recheck_at_instant"]
