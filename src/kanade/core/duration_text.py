"""The duration grammar itself (SPEC §2.1): ``30s``, ``1h30m``, ``1.5h`` ↔ ``timedelta``.

Standard library only: the CLI and the agent read durations without loading pydantic
(:mod:`kanade.core.durations` adds the pydantic field types). The grammar and its edge
cases: docs/documents.md, "The duration grammar".
"""

from __future__ import annotations

import re
import reprlib
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Final

EXAMPLES: Final = "use e.g. 500ms, 30s, 10m, 6h, 1d or 1h30m"

# Longest accepted text. Real durations are a few characters; the cap keeps a hostile
# document from making us do Decimal arithmetic on megabyte-long numbers.
MAX_LENGTH: Final = 64

# Units from largest to smallest, with their length in microseconds.
_UNIT_US: Final[dict[str, int]] = {
    "w": 7 * 86_400_000_000,
    "d": 86_400_000_000,
    "h": 3_600_000_000,
    "m": 60_000_000,
    "s": 1_000_000,
    "ms": 1_000,
}
_UNIT_ORDER: Final = tuple(_UNIT_US)

# "ms" must be tried before "m" so that "500ms" is not read as 500 minutes + "s".
_TERM: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|w|d|h|m|s)\s*", re.ASCII)

# The same grammar as a JSON Schema pattern (without the order rule, which a regex
# cannot express compactly); served to editors so they flag typos as you type.
PATTERN: Final = r"^\s*([0-9]+(\.[0-9]+)?\s*(ms|w|d|h|m|s)\s*)+$"

# Ten years: no document needs more, and far from the overflow of datetime arithmetic
# (now + 365000d is past year 9999). The same as kanade.core.bounds.MAX_DURATION_S, which
# this module cannot import (bounds loads pydantic); a test keeps them equal.
MAX_DURATION_S: Final = 3660 * 86_400.0
MAX_US: Final = int(MAX_DURATION_S) * 1_000_000


# A bounded repr: a YAML alias bomb or a deeply nested value must not cost more than
# the few characters that end up in the message.
_REPR: Final = reprlib.Repr()  # Python 3.11's Repr takes no keyword arguments
_REPR.maxlevel = 2
_REPR.maxtuple = _REPR.maxlist = _REPR.maxdict = _REPR.maxset = 3
_REPR.maxstring = _REPR.maxother = 40


def quoted(value: object) -> str:
    """The user's value, quoted and shortened, for an error message.

    Shortened *before* any repr of a large value would matter: messages echo what the
    user wrote, and a megabyte of it helps nobody.
    """
    text = value if isinstance(value, str) else _REPR.repr(value)
    if len(text) > 40:
        text = text[:40] + "..."
    return '"' + text.replace('"', '\\"') + '"'


def parse_duration(text: str) -> timedelta:
    """Parse ``text`` (e.g. ``"1h30m"``) into a timedelta; ``ValueError`` if it is not one.

    Fractions are exact (decimal arithmetic) and rounded to the microsecond, the
    resolution of ``timedelta``; a non-zero value that would round to zero is rejected
    rather than silently becoming ``0``.
    """
    if not isinstance(text, str):
        raise ValueError(f"{quoted(type(text).__name__)} is not a duration ({EXAMPLES})")
    bad = ValueError(f"{quoted(text)} is not a duration ({EXAMPLES})")
    if len(text) > MAX_LENGTH:
        raise bad
    body = text.strip()
    if not body:
        raise bad

    total = Decimal(0)
    pos = 0
    last_rank = -1
    any_nonzero = False
    while pos < len(body):
        match = _TERM.match(body, pos)
        if match is None:
            raise bad
        number, unit = match.group(1), match.group(2)
        rank = _UNIT_ORDER.index(unit)
        if rank <= last_rank:
            raise ValueError(
                f"{quoted(text)} is not a duration: write units from largest to smallest, "
                f"each at most once (e.g. 1h30m)"
            )
        last_rank = rank
        try:
            value = Decimal(number)
        except InvalidOperation:  # pragma: no cover - the regex only admits valid decimals
            raise bad from None
        any_nonzero = any_nonzero or value != 0
        total += value * _UNIT_US[unit]
        pos = match.end()

    micros = int(total.to_integral_value())  # banker's rounding; fine at 1 µs
    if any_nonzero and micros == 0:
        raise ValueError(f"{quoted(text)} is shorter than one microsecond")
    if micros > MAX_US:
        raise ValueError(
            f"{quoted(text)} is too long a duration (at most {int(MAX_DURATION_S // 86400)}d)"
        )
    return timedelta(microseconds=micros)


def format_duration(td: timedelta) -> str:
    """The canonical, shortest text of ``td``: ``1h30m``, ``0s``, ``1s500ms``, ``2d``.

    Weeks are written as days (``14d``), which people read more easily. Sub-millisecond
    parts are written as a decimal fraction of a millisecond (``0.001ms`` = 1 µs), so
    ``parse_duration(format_duration(td)) == td`` holds for every non-negative timedelta.
    """
    if td < timedelta(0):
        raise ValueError(f"a duration cannot be negative (got {td})")
    micros = td // timedelta(microseconds=1)
    if micros == 0:
        return "0s"
    parts: list[str] = []
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_US[unit]
        count, micros = divmod(micros, size)
        if count:
            parts.append(f"{count}{unit}")
    if micros:
        ms, us = divmod(micros, 1000)
        if us:
            fraction = f"{us:03d}".rstrip("0")
            parts.append(f"{ms}.{fraction}ms")
        else:
            parts.append(f"{ms}ms")
    return "".join(parts)
