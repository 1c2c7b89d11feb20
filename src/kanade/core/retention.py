"""Retention (SPEC §4.12): how long each growing table keeps its rows, and how many.

The defaults, the bounds every value must stay within, and the one parser of the
``--retain FIELD=VALUE`` overrides (each error names its field). Pure: the backend's
retention worker applies a :class:`Policy` (``kanade.backend.workers.retention``), and the
broker's stream limits come from the same defaults (``kanade.bus.topology``), so a database
rebuilt from the streams holds what the defaults keep. Why each default: docs/retention.md.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Final, Literal

from kanade.core.durations import format_duration, parse_duration, quoted

DAY: Final = timedelta(days=1)

# The stream each projected table is rebuilt from keeps the same age (bus.topology).
RESULTS_MAX_AGE: Final = 30 * DAY
"""Results, their output objects, and what is derived from them (inventory history)."""
EXECUTIONS_MAX_AGE: Final = 30 * DAY
"""Ended execs, counted from when they ended. Not longer than the results: an exec rebuilt
from KANADE_EXECS without its results in KANADE_RESULTS would be closed as no_result."""
AUDIT_MAX_AGE: Final = 365 * DAY
DECISIONS_MAX_AGE: Final = 365 * DAY
"""Schedule decisions, the central scheduler's and the agents' (KANADE_DECISIONS)."""

DECISIONS_PER_SCHEDULE: Final = 200
"""Decisions kept per schedule by default (the schedule's operator-state document carries
them all, so a wiped database gets back as many)."""
MAX_DECISIONS_PER_SCHEDULE: Final = 10_000
"""Bound of a per-schedule count: a schedule's document must fit one KV value (8 MiB)."""

MIN_AGE: Final = timedelta(minutes=1)
MAX_AGE: Final = 36_500 * DAY
MAX_ROWS: Final = 10**12
MIN_INTERVAL: Final = timedelta(seconds=1)
MAX_INTERVAL: Final = DAY
MIN_BATCH: Final = 10
MAX_BATCH: Final = 50_000

Per = Literal["schedule"]


@dataclass(frozen=True)
class Limit:
    """One table's limits; ``None`` turns a limit off. ``per``: ``max_rows`` counts the rows
    of each schedule, not the whole table."""

    max_age: timedelta | None
    max_rows: int | None
    per: Per | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "max_age": None if self.max_age is None else format_duration(self.max_age),
            "max_rows": self.max_rows,
            "rows_per": self.per or "table",
        }


TABLES: Final[tuple[str, ...]] = (
    "results",
    "executions",
    "inventory_history",
    "audit",
    "schedule_decisions",
    "agent_schedule_decisions",
    "enroll_tokens",
)
"""Every table that would otherwise grow forever, in the order a pass prunes them (results
first: an exec's own pass then has few results left to take with it)."""

DEFAULT_LIMITS: Final[Mapping[str, Limit]] = MappingProxyType(
    {
        # 10 000 pcs x one hourly job = 240 000 rows a day: 30 days fit well under the count.
        "results": Limit(RESULTS_MAX_AGE, 10_000_000),
        "executions": Limit(EXECUTIONS_MAX_AGE, 1_000_000),
        "inventory_history": Limit(RESULTS_MAX_AGE, 5_000_000),
        # The audit stream holds about a million records in its 256 MiB.
        "audit": Limit(AUDIT_MAX_AGE, 1_000_000),
        "schedule_decisions": Limit(DECISIONS_MAX_AGE, DECISIONS_PER_SCHEDULE, "schedule"),
        "agent_schedule_decisions": Limit(DECISIONS_MAX_AGE, DECISIONS_PER_SCHEDULE, "schedule"),
        # Used, cancelled or expired enrolment tokens; an open one is never pruned.
        "enroll_tokens": Limit(90 * DAY, None),
    }
)


@dataclass(frozen=True)
class Policy:
    """What the retention worker keeps, how often it looks and how much it deletes per
    transaction (small batches: the projectors' writes get in between)."""

    limits: Mapping[str, Limit]
    interval: timedelta = timedelta(minutes=5)
    batch: int = 500

    def limit(self, table: str) -> Limit:
        return self.limits[table]

    def describe(self) -> dict[str, Any]:
        return {
            "interval": format_duration(self.interval),
            "batch": self.batch,
            "tables": {t: self.limits[t].describe() for t in TABLES},
        }


DEFAULT_POLICY: Final = Policy(DEFAULT_LIMITS)


class RetentionError(ValueError):
    """A retention setting refused; ``field`` is its path (``retention.results.max_age``)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


_GLOBAL_FIELDS: Final = ("interval", "batch")
_TABLE_FIELDS: Final = ("max_age", "max_rows")
OFF: Final = "off"


def _choices(word: str, options: Iterable[str]) -> str:
    options = list(options)
    close = difflib.get_close_matches(word, options, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"{hint}one of: {', '.join(options)}"


def _age(field: str, text: str) -> timedelta | None:
    if text == OFF:
        return None
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise RetentionError(field, str(exc)) from None
    if not MIN_AGE <= value <= MAX_AGE:
        raise RetentionError(
            field,
            f"{quoted(text)} is out of range: between {format_duration(MIN_AGE)} and "
            f"{format_duration(MAX_AGE)}, or {OFF}",
        )
    return value


def _rows(field: str, text: str, upper: int) -> int | None:
    if text == OFF:
        return None
    cleaned = text.replace("_", "")
    if not cleaned.isascii() or not cleaned.isdigit() or len(cleaned) > 13:
        raise RetentionError(field, f"{quoted(text)} is not a whole number of rows (or {OFF})")
    value = int(cleaned)
    if not 1 <= value <= upper:
        raise RetentionError(field, f"{value} is out of range: between 1 and {upper}, or {OFF}")
    return value


def _set(policy: Policy, name: str, text: str) -> Policy:
    field = f"retention.{name}"
    head, _, tail = name.partition(".")
    if not tail:
        if head == "interval":
            try:
                interval = parse_duration(text)
            except ValueError as exc:
                raise RetentionError(field, str(exc)) from None
            if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
                raise RetentionError(
                    field,
                    f"{quoted(text)} is out of range: between {format_duration(MIN_INTERVAL)} "
                    f"and {format_duration(MAX_INTERVAL)}",
                )
            return replace(policy, interval=interval)
        if head == "batch":
            batch = _rows(field, text, MAX_BATCH)
            if batch is None or batch < MIN_BATCH:
                raise RetentionError(
                    field, f"{quoted(text)} is out of range: between {MIN_BATCH} and {MAX_BATCH}"
                )
            return replace(policy, batch=batch)
        if head in TABLES:
            raise RetentionError(field, f"name a limit: {head}.max_age or {head}.max_rows")
        known = (*_GLOBAL_FIELDS, *TABLES)
        raise RetentionError(field, f"unknown setting; {_choices(head, known)}")
    if head not in TABLES:
        raise RetentionError(f"retention.{head}", f"unknown table; {_choices(head, TABLES)}")
    limit = policy.limits[head]
    if tail == "max_age":
        limit = replace(limit, max_age=_age(field, text))
    elif tail == "max_rows":
        if head == "enroll_tokens":
            raise RetentionError(field, "enrolment tokens are kept by age only")
        upper = MAX_DECISIONS_PER_SCHEDULE if limit.per == "schedule" else MAX_ROWS
        limit = replace(limit, max_rows=_rows(field, text, upper))
    else:
        raise RetentionError(field, f"unknown limit; {_choices(tail, _TABLE_FIELDS)}")
    return replace(policy, limits=MappingProxyType({**policy.limits, head: limit}))


def parse_overrides(items: Iterable[str], base: Policy = DEFAULT_POLICY) -> Policy:
    """``base`` with each ``FIELD=VALUE`` applied in order (``results.max_age=60d``,
    ``audit.max_rows=off``, ``interval=1m``, ``batch=2000``); :class:`RetentionError`
    names the first bad field."""
    policy = base
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if name.startswith("retention."):
            name = name[len("retention.") :]
        if not sep or not name or not value:
            raise RetentionError(
                f"retention.{name or '?'}",
                f"{quoted(item)} is not FIELD=VALUE (e.g. results.max_age=60d)",
            )
        policy = _set(policy, name, value)
    return policy


__all__ = [
    "AUDIT_MAX_AGE",
    "DECISIONS_MAX_AGE",
    "DECISIONS_PER_SCHEDULE",
    "DEFAULT_LIMITS",
    "DEFAULT_POLICY",
    "EXECUTIONS_MAX_AGE",
    "MAX_DECISIONS_PER_SCHEDULE",
    "RESULTS_MAX_AGE",
    "TABLES",
    "Limit",
    "Policy",
    "RetentionError",
    "parse_overrides",
]
