"""The one duration grammar of every user-authored document (SPEC §2.1): ``30s``,
``1h30m``, ``1.5h`` … parsed to seconds, and the pydantic field types that read it (the
grammar itself, without pydantic: :mod:`kanade.core.duration_text`).

The grammar and its edge cases: docs/documents.md, "The duration grammar".
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from kanade.core.bounds import (
    MAX_BACKOFF_S,
    MAX_CACHE_AGE_S,
    MAX_DURATION_S,
    MAX_JITTER_S,
    MAX_STARTING_DEADLINE_S,
    MAX_TIMEOUT_S,
    duration_at_most,
)
from kanade.core.duration_text import (
    EXAMPLES,
    MAX_LENGTH,
    MAX_US,
    PATTERN,
    format_duration,
    parse_duration,
    quoted,
)

__all__ = [
    "EXAMPLES",
    "MAX_LENGTH",
    "PATTERN",
    "Backoff",
    "CacheAge",
    "Duration",
    "Jitter",
    "StartingDeadline",
    "Timeout",
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
        if value > timedelta(microseconds=MAX_US):
            raise ValueError(f"too long a duration (at most {int(MAX_DURATION_S // 86400)}d)")
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

# Durations with a tighter bound than any duration (kanade.core.bounds): the same limits
# the wire applies to the seconds they become, so a writer never accepts what an agent
# would refuse.
Timeout = Annotated[Duration, duration_at_most(MAX_TIMEOUT_S)]
Jitter = Annotated[Duration, duration_at_most(MAX_JITTER_S)]
Backoff = Annotated[Duration, duration_at_most(MAX_BACKOFF_S)]
CacheAge = Annotated[Duration, duration_at_most(MAX_CACHE_AGE_S)]
StartingDeadline = Annotated[Duration, duration_at_most(MAX_STARTING_DEADLINE_S)]
