"""Fleet freeze (SPEC §4.5): the one model of a fleet-wide stop for scheduled fires, and
:func:`is_frozen`. Pure.

The record, its window and why manual execs are not gated: docs/documents.md, "The fleet
freeze model".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, Field

from kanade.core.bounds import loads as json_loads
from kanade.core.instants import as_utc, format_instant, parse_instant, to_utc
from kanade.core.models.base import WireModel

FREEZE_KEY: Final = "fleet"
UNREADABLE_REASON: Final = "unreadable freeze record"


def window_covers(start: datetime | None, until: datetime | None, moment: datetime) -> bool:
    """The freeze rule, used by the API and by both schedulers: ``moment`` is inside
    ``[start, until)``; a missing bound is open-ended. Naive values are UTC."""
    moment = as_utc(moment)
    if start is not None and moment < as_utc(start):
        return False
    return until is None or moment < as_utc(until)


def parse_bound(value: Any, name: str = "bound") -> datetime | None:
    """A freeze bound from its stored form (ISO text or a datetime) as aware UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    try:
        return parse_instant(value)
    except ValueError:
        raise ValueError(f"freeze.{name}: {value!r} is not a date-time") from None


@dataclass(frozen=True)
class Freeze:
    """The freeze window ``[from_, until)``; bounds must be aware and ordered."""

    from_: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        for bound in (self.from_, self.until):
            if bound is not None:
                to_utc(bound)  # aware or ValueError
        if self.from_ is not None and self.until is not None and self.from_ >= self.until:
            raise ValueError("freeze.until must be after freeze.from (the range is [from, until))")

    def covers(self, moment: datetime) -> bool:
        """Whether ``moment`` is inside ``[from, until)``."""
        return window_covers(self.from_, self.until, to_utc(moment))

    def describe(self) -> str:
        start = "-∞" if self.from_ is None else format_instant(self.from_)
        end = "∞" if self.until is None else format_instant(self.until)
        return f"fleet freeze [{start}, {end})"

    def to_json(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.from_ is not None:
            out["from"] = format_instant(self.from_)
        if self.until is not None:
            out["until"] = format_instant(self.until)
        return out


def _bound(value: Any) -> datetime | None:
    return parse_bound(value)


Bound = Annotated[datetime | None, BeforeValidator(_bound)]


class FleetFreeze(WireModel):
    """The stored record: the window, who set it, why and when."""

    from_: Bound = Field(default=None, alias="from")
    until: Bound = None
    by: str = "anonymous"
    reason: str = ""
    set_at: datetime

    @property
    def window(self) -> Freeze:
        """The window the schedulers gate on (``ValueError`` if its bounds are not ordered)."""
        return Freeze(self.from_, self.until)

    def to_dict(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)


def freeze_from_json(data: Mapping[str, Any]) -> Freeze:
    """A :class:`Freeze` from its stored form ``{"from"?: iso, "until"?: iso}``; unknown keys
    are ignored (tolerant reader); a bad value is a ``ValueError``."""
    return Freeze(parse_bound(data.get("from"), "from"), parse_bound(data.get("until"), "until"))


def _object(raw: bytes) -> Mapping[str, Any]:
    data = json_loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def decode_freeze(
    raw: bytes | None, on_unreadable: Callable[[Exception], None] | None = None
) -> Freeze | None:
    """The window from the KV value (None: no freeze). An unreadable record reads as an
    open window — frozen, the safe side — after ``on_unreadable`` is told why."""
    if raw is None or not raw.strip():
        return None
    try:
        return freeze_from_json(_object(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        if on_unreadable is not None:
            on_unreadable(exc)
        return Freeze()


def decode_fleet_freeze(
    raw: bytes | None, on_unreadable: Callable[[Exception], None] | None = None
) -> FleetFreeze | None:
    """The record from the KV value (None: no freeze); an unreadable one reads as
    :func:`unreadable_freeze` after ``on_unreadable`` is told why."""
    if not raw:
        return None
    try:
        return FleetFreeze.model_validate(_object(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        if on_unreadable is not None:
            on_unreadable(exc)
        return unreadable_freeze()


def unreadable_freeze() -> FleetFreeze:
    """What a damaged record reads as: frozen, open-ended (freezing is the safe side)."""
    return FleetFreeze(
        by="unknown", reason=UNREADABLE_REASON, set_at=datetime.min.replace(tzinfo=UTC)
    )


def is_frozen(freeze: Freeze | FleetFreeze | None, moment: datetime) -> bool:
    """True when a scheduled fire at ``moment`` must not happen."""
    if freeze is None:
        return False
    if isinstance(freeze, FleetFreeze):
        return window_covers(freeze.from_, freeze.until, moment)
    return freeze.covers(moment)
