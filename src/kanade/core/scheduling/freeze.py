"""Fleet freeze (SPEC §4.5): ``{from?, until?}``, half-open ``[from, until)``.

A missing bound is open: ``{}`` freezes from now until it is cleared, ``{until: t}`` freezes
everything before ``t``, ``{from: t}`` everything from ``t`` on. A freeze gates scheduled
fires on the backend and on agents, never manual execs. Bounds are absolute instants; a
stored value without an offset is read as UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kanade.core.freeze import window_covers
from kanade.core.scheduling.timezones import to_utc


@dataclass(frozen=True)
class Freeze:
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
        start = "-∞" if self.from_ is None else _iso(self.from_)
        end = "∞" if self.until is None else _iso(self.until)
        return f"fleet freeze [{start}, {end})"

    def to_json(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.from_ is not None:
            out["from"] = _iso(self.from_)
        if self.until is not None:
            out["until"] = _iso(self.until)
        return out


def _iso(moment: datetime) -> str:
    return to_utc(moment).isoformat().replace("+00:00", "Z")


def _instant(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and len(value) <= 64:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"freeze.{name}: {value!r} is not a date-time") from None
    else:
        raise ValueError(f"freeze.{name}: {value!r} is not a date-time")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else to_utc(moment)


def freeze_from_json(data: Mapping[str, Any]) -> Freeze:
    """A :class:`Freeze` from its stored form ``{"from"?: iso, "until"?: iso}``; unknown keys
    are ignored (tolerant reader); a bad value is a ``ValueError``."""
    return Freeze(_instant(data.get("from"), "from"), _instant(data.get("until"), "until"))


def is_frozen(freeze: Freeze | None, moment: datetime) -> bool:
    return freeze is not None and freeze.covers(moment)
