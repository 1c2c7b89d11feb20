"""A schedule's ``when`` (SPEC §2.2): reconcile shapes, calendar days and times, cron.

The parsed forms (calendar days as :class:`DaySpec`, dates and wall-clock times) are kept here
so the backend's and the agent's schedulers share one interpretation of the text people wrote."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Final, Literal

from cronsim import CronSim
from pydantic import (
    GetJsonSchemaHandler,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from kanade.core.durations import PATTERN as DURATION_PATTERN
from kanade.core.durations import Duration, quoted
from kanade.core.models.base import DocModel
from kanade.core.models.job import (
    Loc,
    rule_error,
    rule_errors,
)

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_HELP: Final = "use mon..sun, a range like mon-fri, tue#2 (2nd Tuesday) or friL (last Friday)"

_HHMM_RE: Final = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$", re.ASCII)
_DATED_RE: Final = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[ T]+([0-9]{1,2}:[0-9]{2})$", re.ASCII
)
_DATE_RE: Final = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$", re.ASCII)
_TZ_RE: Final = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$", re.ASCII)


def _sexagesimal_hint(value: object, example: str) -> str | None:
    # YAML 1.1 reads an unquoted 12:30 as the base-60 number 750: say so instead of
    # printing a baffling "750 is not a time".
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value} is a number; write the time in quotes, e.g. {example}"
    return None


# --- times and dates ----------------------------------------------------------------------
def parse_hhmm(text: str) -> time:
    """``"HH:MM"`` (24-hour, ``H:MM`` accepted) → ``time``; ``ValueError`` otherwise."""
    match = _HHMM_RE.match(text.strip())
    if match is None:
        raise ValueError(f"{quoted(text)} is not a time (use HH:MM, 00:00 to 23:59)")
    return time(int(match.group(1)), int(match.group(2)))


def parse_date(text: str) -> date:
    """``"YYYY-MM-DD"`` → ``date``; ``ValueError`` otherwise."""
    match = _DATE_RE.match(text.strip())
    try:
        if match is None:
            raise ValueError
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        raise ValueError(f"{quoted(text)} is not a date (use YYYY-MM-DD)") from None


def parse_at(text: str) -> tuple[date | None, time]:
    """A calendar ``at``: ``"HH:MM"`` (repeating) or ``"YYYY-MM-DD HH:MM"`` (one-shot)."""
    match = _DATED_RE.match(text.strip())
    if match is not None:
        try:
            day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            raise ValueError(f"{quoted(text)} is not a valid date and time") from None
        try:
            return day, parse_hhmm(match.group(4))
        except ValueError:
            raise ValueError(f"{quoted(text)} is not a valid date and time") from None
    try:
        return None, parse_hhmm(text)
    except ValueError:
        raise ValueError(
            f'{quoted(text)} is not a time (use "HH:MM", or "YYYY-MM-DD HH:MM" for a one-shot)'
        ) from None


def _date_or_datetime(value: Any) -> date | datetime:
    if isinstance(value, date):  # datetime is a date subclass: both kept as they are
        return value
    if isinstance(value, str) and len(value) <= 64:
        text = value.strip()
        if _DATE_RE.match(text):
            return parse_date(text)
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(
        f"{quoted(value)} is not a date or date-time (use YYYY-MM-DD or YYYY-MM-DD HH:MM)"
    )


def _plain_date(value: Any) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"{quoted(value)} has a time; write only the date (YYYY-MM-DD)")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return parse_date(value)
    raise ValueError(f"{quoted(value)} is not a date (use YYYY-MM-DD)")


def _iso(value: date) -> str:
    return value.isoformat()


DateOrDateTime = Annotated[
    date | datetime,
    PlainValidator(_date_or_datetime),
    # Explicit: pydantic's own serializer for a date|datetime union warns on datetimes.
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema(
        {"type": "string", "description": "YYYY-MM-DD or an ISO date-time (YYYY-MM-DD HH:MM)"}
    ),
]
PlainDate = Annotated[
    date,
    PlainValidator(_plain_date),
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date"}),
]


# --- when ---------------------------------------------------------------------------------
class Reconcile(DocModel):
    """``per_pc`` / ``per_target``: ``once``, or ``{every: <dur>}`` (again after ``every``
    since the last success). Written as the bare word ``once`` or as a mapping; kept as one
    model (``every is None`` means once) so there is no union for errors to fan out over."""

    every: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _once_or_every(cls, data: Any) -> Any:
        if isinstance(data, str) and data == "once":
            return {}
        if isinstance(data, Reconcile):
            return data
        if isinstance(data, dict):
            if data.get("every") is None:
                raise rule_error(("every",), "required (e.g. every: 1d), or write just: once")
            return data
        raise ValueError(f"{quoted(data)} is not valid; write once, or {{every: <duration>}}")

    @field_validator("every")
    @classmethod
    def _every_positive(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return v

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> Any:
        return "once" if self.every is None else handler(self)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [
                {"const": "once"},
                {
                    "type": "object",
                    "properties": {"every": {"type": "string", "pattern": DURATION_PATTERN}},
                    "required": ["every"],
                    "additionalProperties": False,
                },
            ]
        }

    @property
    def once(self) -> bool:
        return self.every is None


@dataclass(frozen=True)
class DaySpec:
    """One calendar day rule: a weekday (0 = Monday), optionally the ``nth`` of the month
    (1-5) or the ``last`` of the month."""

    weekday: int
    nth: int | None = None
    last: bool = False

    def matches(self, day: date) -> bool:
        if day.weekday() != self.weekday:
            return False
        if self.nth is not None:
            return (day.day - 1) // 7 + 1 == self.nth
        if self.last:
            return (day + timedelta(days=7)).month != day.month
        return True

    def __str__(self) -> str:
        name = WEEKDAYS[self.weekday]
        if self.nth is not None:
            return f"{name}#{self.nth}"
        return f"{name}L" if self.last else name


def parse_day(token: str) -> list[DaySpec]:
    """``mon`` | ``mon-fri`` (wraps: ``fri-mon`` = fri,sat,sun,mon) | ``tue#2`` | ``friL``."""
    text = token.strip().lower()
    if text in WEEKDAYS:
        return [DaySpec(WEEKDAYS.index(text))]
    first, sep, last = text.partition("-")
    if sep and first in WEEKDAYS and last in WEEKDAYS:
        start, end = WEEKDAYS.index(first), WEEKDAYS.index(last)
        span = (end - start) % 7
        return [DaySpec((start + i) % 7) for i in range(span + 1)]
    name, sep, nth = text.partition("#")
    if sep and name in WEEKDAYS and nth in ("1", "2", "3", "4", "5"):
        return [DaySpec(WEEKDAYS.index(name), nth=int(nth))]
    if text.endswith("l") and text[:-1] in WEEKDAYS:
        return [DaySpec(WEEKDAYS.index(text[:-1]), last=True)]
    raise ValueError(f"{quoted(token)} is not a day ({DAY_HELP})")


class Calendar(DocModel):
    """Wall-clock fires: ``at: "HH:MM"`` on ``days`` (every day when omitted), or a one-shot
    ``at: "YYYY-MM-DD HH:MM"`` (no days)."""

    at: str
    days: list[str] | None = None

    _date: date | None = PrivateAttr(default=None)
    _time: time = PrivateAttr(default=time(0, 0))
    _days: tuple[DaySpec, ...] = PrivateAttr(default=())

    @field_validator("at", mode="plain", json_schema_input_type=str)
    @classmethod
    def _at_valid(cls, v: Any) -> str:
        hint = _sexagesimal_hint(v, 'at: "12:30"')
        if hint:
            raise ValueError(hint)
        if not isinstance(v, str):
            raise ValueError(f'{quoted(v)} is not a time (use "HH:MM")')
        parse_at(v)
        return v

    @field_validator("days", mode="plain", json_schema_input_type=list[str] | str | None)
    @classmethod
    def _days_valid(cls, v: Any) -> list[str] | None:
        if v is None:
            return None
        # `days: mon-fri` (no brackets) is an easy slip with one obvious meaning.
        items: list[Any] = v.split(",") if isinstance(v, str) else v
        if not isinstance(items, list):
            raise ValueError(f"must be a list of days ({DAY_HELP})")
        if not items:
            raise ValueError("lists no day; leave days out to fire every day")
        problems: list[tuple[Loc, str]] = []
        for i, item in enumerate(items):
            if not isinstance(item, str):
                problems.append(((i,), f"{quoted(item)} is not a day ({DAY_HELP})"))
                continue
            try:
                parse_day(item)
            except ValueError as exc:
                problems.append(((i,), str(exc)))
        if problems:
            raise rule_errors(problems)
        return [item.strip() for item in items]

    @model_validator(mode="after")
    def _parse(self) -> Calendar:
        self._date, self._time = parse_at(self.at)
        if self._date is not None and self.days is not None:
            raise rule_error(
                ("days",), "a dated at (YYYY-MM-DD HH:MM) fires once; it takes no days"
            )
        specs: list[DaySpec] = []
        for item in self.days or ():
            specs.extend(s for s in parse_day(item) if s not in specs)
        self._days = tuple(specs)
        return self

    @property
    def time_of_day(self) -> time:
        return self._time

    @property
    def one_shot_date(self) -> date | None:
        """The date of a one-shot ``at``; None for a repeating calendar."""
        return self._date

    @property
    def day_specs(self) -> tuple[DaySpec, ...]:
        """Parsed ``days`` (ranges expanded, duplicates dropped); empty = every day."""
        return self._days

    def fires_on(self, day: date) -> bool:
        """Whether this calendar has an occurrence on ``day`` (a local date in the tz)."""
        if self._date is not None:
            return day == self._date
        return not self._days or any(spec.matches(day) for spec in self._days)


def check_cron(expr: str) -> str:
    """Validate a 5-field cron expression, or 6 fields with *seconds first* (cronsim)."""
    if len(expr) > 256:
        raise ValueError("is too long for a cron expression")
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f"{quoted(expr)} is not a cron expression: it has {len(fields)} fields, "
            "needs 5 (min hour day month weekday) or 6 (seconds first)"
        )
    try:
        CronSim(expr, datetime(2000, 1, 1))
    except Exception as exc:  # cronsim raises CronSimError, but junk must never escape
        detail = str(exc) or type(exc).__name__
        raise ValueError(f"{quoted(expr)} is not a cron expression ({detail})") from None
    return expr


_WHEN_SHAPES: Final = ("per_pc", "per_target", "calendar", "cron")


class When(DocModel):
    """Exactly one shape."""

    per_pc: Reconcile | None = None
    per_target: Reconcile | None = None
    calendar: Calendar | None = None
    cron: str | None = None

    @field_validator("cron")
    @classmethod
    def _cron_valid(cls, v: str | None) -> str | None:
        return None if v is None else check_cron(v)

    @model_validator(mode="after")
    def _exactly_one(self) -> When:
        given = [s for s in _WHEN_SHAPES if getattr(self, s) is not None]
        if len(given) != 1:
            got = " and ".join(given) if given else "none"
            raise ValueError(f"set exactly one of per_pc, per_target, calendar or cron (got {got})")
        return self

    @property
    def shape(self) -> Literal["per_pc", "per_target", "calendar", "cron"]:
        if self.per_pc is not None:
            return "per_pc"
        if self.per_target is not None:
            return "per_target"
        return "calendar" if self.calendar is not None else "cron"


