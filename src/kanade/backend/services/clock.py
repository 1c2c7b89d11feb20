"""The services' clock and instant format (until core has the one time module)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_z(t: datetime) -> str:
    """ISO 8601 with a ``Z`` suffix, as the KV records and exec-status records carry it."""
    return t.isoformat().replace("+00:00", "Z")
