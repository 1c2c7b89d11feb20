"""The bounds of every value that crosses a process boundary (SPEC §2.3, §7, §8.3): one
table of limits, and the typed fields that apply them, shared by every writer and reader.

The wire models (:mod:`kanade.core.models.wire`, :mod:`kanade.core.models.records`), the
documents' durations and the agent's settings all take their limits from here, so the
backend refuses to write what an agent would refuse to read, and a reader never lets an
absurd value reach arithmetic, a sleep or a database column (a 2^64 heartbeat field once
made every later heartbeat write fail). Why each limit is what it is: docs/bounds.md.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from pydantic import AfterValidator, Field, StringConstraints

from kanade.core.ids import SLUG_RE, SLUG_RULE

DAY: Final = 86_400.0

# --- identifiers and text ------------------------------------------------------------------
MAX_COMMAND_ID_CHARS: Final = 128
"""A command's ``request_id``/``exec_id``: minted ids are 32 hex characters; the agent's own
aliases (``…:refused:<12>``, ``…:replay:<seq>``) add up to ~40 and must still fit
:data:`MAX_ID_CHARS`."""
MAX_ID_CHARS: Final = 200
"""A result's ``result_id``/``request_id``/``exec_id`` (a command id plus an alias suffix)."""
MAX_NAME_CHARS: Final = 128
"""A version, an agent version, a hint's field name."""
MAX_TEXT_CHARS: Final = 1024
"""Short free text: hostnames, OS versions, actors, reasons."""
MAX_NOTE_CHARS: Final = 64 * 1024
"""A result's note (reasons joined); longer is cut, never refused."""
MAX_LIST_ITEMS: Final = 1000
"""Entries of a small list on the wire (a heartbeat's groups, a hint's fields)."""


# --- durations (seconds on the wire; the same limits in documents) -------------------------
MAX_TIMEOUT_S: Final = 7 * DAY
"""A script's timeout. A week: the command's own signed lifetime (core.signing)."""
MAX_JITTER_S: Final = DAY
"""The random delay before a script starts. It holds the agent's concurrency slot."""
MAX_RETRIES: Final = 10
"""``on_failure.retry.max`` (SPEC §2.2)."""
MAX_BACKOFF_S: Final = DAY
"""The pause between two retries."""
MAX_CACHE_AGE_S: Final = 366 * DAY
"""``staleness.max_cache_age``."""
MAX_STARTING_DEADLINE_S: Final = 7 * DAY
"""``starting_deadline``: past a week the command has expired anyway."""
MAX_DURATION_S: Final = 3660 * DAY
"""Any other duration of a document (``every``, wave delays, …): ten years, far from the
overflow of ``datetime`` arithmetic."""

# --- sizes and counts ----------------------------------------------------------------------
MAX_INLINE_OUTPUT_BYTES: Final = 1024 * 1024
"""Inline stdout/stderr of one result, each (beyond: the outputs object store). Agents cap
at 256 KiB by default; budgets and agent settings may raise it up to this."""
MAX_COUNT: Final = 10**9
"""Queue lengths, attempts, counters."""
MAX_BYTE_COUNT: Final = 2**53
"""Byte counts (RSS, output totals): 8 PiB, exact in a float and far inside 64 bits."""
MAX_CPU_PERCENT: Final = 100.0 * 4096
"""Percent of one core (psutil's definition): 4096 cores."""
MIN_EXIT_CODE: Final = -(2**31)
MAX_EXIT_CODE: Final = 2**32 - 1  # Windows exit codes are unsigned 32-bit

# --- instants ------------------------------------------------------------------------------
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)


def _instant(value: datetime) -> datetime:
    # A naive instant on the wire is UTC (every writer sends "Z"): never let a naive
    # datetime reach a comparison with an aware one (TypeError far from the message).
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        value = value.replace(tzinfo=UTC)
    if not EARLIEST <= value < LATEST:
        raise ValueError(
            f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (got {value:%Y-%m-%d})"
        )
    return value


Instant = Annotated[datetime, AfterValidator(_instant)]
"""An aware instant within :data:`EARLIEST` .. :data:`LATEST` (naive is read as UTC)."""

def _matching(regex: re.Pattern[str], rule: str) -> AfterValidator:
    # One compiled Python regex shared by every field, checked with fullmatch: a pattern
    # constraint compiles a regex per field in every model (hundreds of KB in an idle
    # agent), and "$" would let a final newline through.
    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise ValueError(rule)
        return value

    return AfterValidator(check)


_ID_RE: Final = re.compile(r"[!-~]+")
_ID_RULE: Final = "must be printable ASCII without spaces"
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")

CommandId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_COMMAND_ID_CHARS),
    _matching(_ID_RE, _ID_RULE),
]
WireId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS), _matching(_ID_RE, _ID_RULE)
]
Slug = Annotated[str, _matching(SLUG_RE, SLUG_RULE)]
"""A job, group, schedule or pc id (:data:`kanade.core.ids.SLUG_RE`)."""
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
Sha256 = Annotated[str, _matching(_SHA256_RE, "must be 64 lowercase hex digits")]

Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
ByteCount = Annotated[int, Field(ge=0, le=MAX_BYTE_COUNT)]
ExitCode = Annotated[int, Field(ge=MIN_EXIT_CODE, le=MAX_EXIT_CODE)]
OutputCap = Annotated[int, Field(ge=0, le=MAX_INLINE_OUTPUT_BYTES)]
Retries = Annotated[int, Field(ge=0, le=MAX_RETRIES)]
CpuPercent = Annotated[float, Field(ge=0, le=MAX_CPU_PERCENT, allow_inf_nan=False)]

TimeoutSeconds = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)]
JitterSeconds = Annotated[float, Field(ge=0, le=MAX_JITTER_S, allow_inf_nan=False)]
BackoffSeconds = Annotated[float, Field(ge=0, le=MAX_BACKOFF_S, allow_inf_nan=False)]
CacheAgeSeconds = Annotated[float, Field(ge=0, le=MAX_CACHE_AGE_S, allow_inf_nan=False)]


# --- text that is cut, never refused -------------------------------------------------------
def cut(text: str, limit: int) -> tuple[str, bool]:
    """``text`` within ``limit`` characters, and whether it was cut.

    For free text that must not cost its message: a finished result is never dropped for
    an oversized stdout (SPEC §7), it is stored cut, with a note saying so. NUL characters
    are replaced too: PostgreSQL refuses them in text columns.
    """
    cutting = len(text) > limit
    if cutting:
        text = text[:limit]
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text, cutting


# --- JSON from outside ----------------------------------------------------------------------
def loads(data: bytes | str) -> Any:
    """``json.loads`` whose every failure is a ``ValueError``.

    A document nested deeper than the interpreter's recursion limit makes ``json`` raise
    ``RecursionError``, which readers catching ``ValueError`` let through: a script printing
    ``[[[[…]]]]`` as inventory once cost its whole result (the projector refused the row),
    and a nested value in the scheduler's KV stopped the scheduler.
    """
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply to be read") from None


# --- durations in documents ----------------------------------------------------------------
def _duration_text(seconds: float) -> str:
    # Not kanade.core.durations.format_duration: that module imports this one.
    td = timedelta(seconds=seconds)
    if td.days and not td.seconds and not td.microseconds:
        return f"{td.days}d"
    return f"{seconds:g}s"


def duration_at_most(limit_s: float, what: str = "") -> AfterValidator:
    """A validator refusing a ``timedelta`` longer than ``limit_s`` seconds."""
    limit = timedelta(seconds=limit_s)
    label = f" ({what})" if what else ""

    def check(value: timedelta) -> timedelta:
        if value > limit:
            raise ValueError(
                f"must be at most {_duration_text(limit_s)}{label}, got "
                f"{_duration_text(value.total_seconds())}"
            )
        return value

    return AfterValidator(check)


def finite_in(value: float, low: float, high: float) -> bool:
    """``low <= value <= high`` and finite (NaN compares false with everything)."""
    return math.isfinite(value) and low <= value <= high


__all__ = [
    "DAY",
    "EARLIEST",
    "LATEST",
    "MAX_BACKOFF_S",
    "MAX_BYTE_COUNT",
    "MAX_CACHE_AGE_S",
    "MAX_COMMAND_ID_CHARS",
    "MAX_COUNT",
    "MAX_CPU_PERCENT",
    "MAX_DURATION_S",
    "MAX_EXIT_CODE",
    "MAX_ID_CHARS",
    "MAX_INLINE_OUTPUT_BYTES",
    "MAX_JITTER_S",
    "MAX_LIST_ITEMS",
    "MAX_NAME_CHARS",
    "MAX_NOTE_CHARS",
    "MAX_RETRIES",
    "MAX_STARTING_DEADLINE_S",
    "MAX_TEXT_CHARS",
    "MAX_TIMEOUT_S",
    "MIN_EXIT_CODE",
    "BackoffSeconds",
    "ByteCount",
    "CacheAgeSeconds",
    "CommandId",
    "Count",
    "CpuPercent",
    "ExitCode",
    "Instant",
    "JitterSeconds",
    "Name",
    "OutputCap",
    "Retries",
    "Sha256",
    "Slug",
    "Text",
    "TimeoutSeconds",
    "WireId",
    "cut",
    "duration_at_most",
    "finite_in",
    "loads",
]
