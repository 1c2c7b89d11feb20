"""Fleet freeze (SPEC §4.5): a fleet-wide stop for *scheduled* fires. Pure.

The record lives in KV bucket ``kanade_freeze`` under key ``fleet`` so both
schedulers (backend and agents, online or not) read the same thing. Manual execs
are deliberately not gated: during an incident the operator still needs to act.

The window is half-open like ``active`` on schedules: frozen from ``from``
(inclusive) until ``until`` (exclusive); a missing bound is open-ended.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from pydantic import Field

from kanade.core.models.base import WireModel

FREEZE_KEY: Final = "fleet"


class FleetFreeze(WireModel):
    from_: datetime | None = Field(default=None, alias="from")
    until: datetime | None = None
    by: str = "anonymous"
    reason: str = ""
    set_at: datetime

    def to_dict(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)


def _aware(moment: datetime) -> datetime:
    # Stored bounds without an offset are UTC (the API writes UTC).
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def window_covers(start: datetime | None, until: datetime | None, moment: datetime) -> bool:
    """The freeze rule, used by the API and by both schedulers: ``moment`` is inside
    ``[start, until)``; a missing bound is open-ended."""
    moment = _aware(moment)
    if start is not None and moment < _aware(start):
        return False
    return until is None or moment < _aware(until)


def is_frozen(freeze: FleetFreeze | None, now: datetime) -> bool:
    """True when a scheduled fire at ``now`` must not happen."""
    return freeze is not None and window_covers(freeze.from_, freeze.until, now)
