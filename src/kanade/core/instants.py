"""Instants: the one place that formats, parses and normalises points in time.

kanade writes every instant as ISO-8601 in UTC with a ``Z`` suffix (``2025-03-09T07:00:00Z``)
and reads stored instants back tolerantly: a value without an offset was written by us in
UTC. Code reads the time through an injected :data:`Clock`; :func:`system_clock` is the one
real clock, and nothing else in :mod:`kanade.core` may read one (tests/unit/core/
test_core_purity.py checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Final

Clock = Callable[[], datetime]
"""Returns the current instant, timezone-aware (UTC)."""

MAX_INSTANT_TEXT: Final = 64
"""Longer text is not an instant: refuse it before parsing (bounded work on input)."""


def system_clock() -> datetime:
    """The wall clock, aware UTC: the default :data:`Clock` of every process."""
    return datetime.now(UTC)


def to_utc(moment: datetime) -> datetime:
    """An aware datetime as UTC; ``ValueError`` for a naive one (never guess a zone)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; pass an aware datetime")
    return moment.astimezone(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` as aware UTC, a naive value read as UTC (what we stored ourselves)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_instant(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix; a naive ``moment`` is taken as UTC."""
    return as_utc(moment).isoformat().replace("+00:00", "Z")


def format_local(moment: datetime, tz: tzinfo) -> str:
    """ISO-8601 wall-clock reading of ``moment`` in ``tz`` with its offset (for display
    beside the UTC form); ``ValueError`` for a naive ``moment``."""
    return to_utc(moment).astimezone(tz).isoformat()


def format_optional(moment: datetime | None) -> str | None:
    """:func:`format_instant`, passing None through."""
    return None if moment is None else format_instant(moment)


def parse_instant(text: object, *, require_offset: bool = False) -> datetime:
    """An ISO-8601 instant (``Z`` or any offset) as aware UTC.

    A value without an offset is read as UTC, unless ``require_offset``. Anything else —
    not a string, longer than :data:`MAX_INSTANT_TEXT`, not ISO-8601 — is a ``ValueError``.
    """
    if not isinstance(text, str) or len(text) > MAX_INSTANT_TEXT:
        raise ValueError(f"{text!r} is not a date-time")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date-time") from None
    if require_offset and (moment.tzinfo is None or moment.utcoffset() is None):
        raise ValueError(f"{text!r} has no time zone offset")
    return as_utc(moment)


__all__ = [
    "MAX_INSTANT_TEXT",
    "Clock",
    "as_utc",
    "format_instant",
    "format_local",
    "format_optional",
    "parse_instant",
    "system_clock",
    "to_utc",
]
