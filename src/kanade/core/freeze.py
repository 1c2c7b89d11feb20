"""Fleet freeze (SPEC §4.5): a fleet-wide stop for *scheduled* fires. Pure.

The record lives in KV bucket ``kanade_freeze`` under key ``fleet`` so both
schedulers (backend and agents, online or not) read the same thing. Manual execs
are deliberately not gated: during an incident the operator still needs to act.

The window is half-open like ``active`` on schedules: frozen from ``from``
(inclusive) until ``until`` (exclusive); a missing bound is open-ended.
"""

from __future__ import annotations

from datetime import datetime
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


def is_frozen(freeze: FleetFreeze | None, now: datetime) -> bool:
    """True when a scheduled fire at ``now`` must not happen."""
    if freeze is None:
        return False
    if freeze.from_ is not None and now < freeze.from_:
        return False
    return not (freeze.until is not None and now >= freeze.until)
