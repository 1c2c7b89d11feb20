"""The one duration grammar of every user-authored document (SPEC §2.1): ``30s``,
``1h30m``, ``1.5h`` … parsed to seconds, and :data:`Duration`, the pydantic field type that
reads it (the grammar itself, without pydantic: :mod:`kanade.core.duration_text`).

The grammar and its edge cases: docs/documents.md, "The duration grammar".
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from kanade.core.duration_text import (
    EXAMPLES,
    MAX_LENGTH,
    PATTERN,
    format_duration,
    parse_duration,
    quoted,
)

__all__ = [
    "EXAMPLES",
    "MAX_LENGTH",
    "PATTERN",
    "Duration",
    "format_duration",
    "parse_duration",
    "quoted",
]


def _validate(value: Any) -> timedelta:
    # bool is an int subclass: reject it together with the numbers.
    if isinstance(value, bool | int | float):
        raise ValueError(
            f"{value!r} is a bare number; write a duration with a unit, e.g. '30s' or '10m'"
        )
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError("a duration cannot be negative")
        return value
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f"must be a duration such as '30s' or '10m' (got {type(value).__name__})")


Duration = Annotated[
    timedelta,
    PlainValidator(_validate),
    # Python-mode dumps keep the timedelta; JSON (API, KV) gets the canonical text.
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": PATTERN,
            "description": "a duration: " + EXAMPLES,
            "examples": ["30s", "10m", "1h30m"],
        }
    ),
]
"""A non-negative duration: accepts the grammar above or a ``timedelta``, never a number."""
