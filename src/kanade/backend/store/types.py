"""Column types shared by the tables."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from kanade.core.instants import as_utc


def _as_utc(value: Any) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected datetime, got {type(value).__name__}")
    return as_utc(value)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    SQLite has no timezone-aware type: SQLAlchemy stores a naive ISO string and
    hands back a naive datetime. Normalising to UTC on the way in (and stripping
    the tzinfo there) keeps the stored strings fixed-width and sortable, so
    ``last_seen >= cutoff`` compares correctly as text; on the way out the UTC
    tzinfo is re-attached so callers never mix naive and aware values.
    PostgreSQL gets a real ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = _as_utc(value)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # Hot path (every projected row binds several timestamps): one C-level
        # isoformat instead of process_bind_param followed by SQLAlchemy's own
        # %-formatting. Same text as SQLAlchemy's SQLite DATETIME storage format
        # ("YYYY-MM-DD HH:MM:SS.ffffff", always with microseconds), so old and new
        # rows compare and sort alike.
        def process(value: Any) -> str | None:
            if value is None:
                return None
            return _as_utc(value).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return as_utc(value)


def _clean(value: str, length: int | None) -> str:
    # PostgreSQL refuses a NUL character in text (SQLite stores it): a script printing
    # binary output must not lose its result there, so NUL becomes U+FFFD, the marker
    # the agent already puts in place of undecodable bytes. On both dialects, so a
    # re-projection into either stores the same text.
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    # PostgreSQL also enforces VARCHAR lengths (SQLite never does): descriptive text an
    # agent reports is cut to the column rather than refused.
    return value[:length] if length is not None and len(value) > length else value


class CleanText(TypeDecorator[str]):
    """Free text from agents or scripts (output, notes): stored on every dialect."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else _clean(str(value), None)


class CleanString(TypeDecorator[str]):
    """A short descriptive string (hostname, OS version): NUL-free, cut to its length."""

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else _clean(str(value), self.length)
