"""A schedule's gates as written (SPEC §2.2): the ``active`` range, ``constraints`` (time
window, skip dates, max_concurrent) and ``on_failure`` retries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Annotated, Any

from pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    field_validator,
    model_validator,
)

from kanade.core.bounds import MAX_RETRIES
from kanade.core.durations import Backoff, quoted
from kanade.core.models.base import DocModel
from kanade.core.models.job import (
    rule_error,
)
from kanade.core.models.when import DateOrDateTime, PlainDate, parse_hhmm


# --- gates ---------------------------------------------------------------------------------
def _naive(value: date | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.combine(value, time())


class ActiveRange(DocModel):
    """Half-open ``[from, until)``; dates mean midnight. Naive values are wall-clock times
    in the schedule's ``tz``; values with an offset are absolute instants."""

    model_config = ConfigDict(serialize_by_alias=True)

    from_: DateOrDateTime | None = Field(default=None, alias="from")
    until: DateOrDateTime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ActiveRange:
        if self.from_ is None or self.until is None:
            return self
        start, end = _naive(self.from_), _naive(self.until)
        if (start.tzinfo is None) != (end.tzinfo is None):
            raise rule_error(
                ("until",),
                "from and until must both have a UTC offset or both have none",
            )
        if start >= end:
            raise rule_error(("until",), "must be after active.from (the range is [from, until))")
        return self

    def bounds(self, tz: tzinfo) -> tuple[datetime | None, datetime | None]:
        """``(from, until)`` as aware datetimes, naive values read as wall-clock in ``tz``."""

        def aware(value: date | datetime | None) -> datetime | None:
            if value is None:
                return None
            moment = _naive(value)
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)

        return aware(self.from_), aware(self.until)


@dataclass(frozen=True)
class TimeWindow:
    """``[start, end)`` in wall-clock time; ``end < start`` crosses midnight."""

    start: time
    end: time

    def contains(self, moment: time) -> bool:
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_window(text: str) -> TimeWindow:
    """``"HH:MM-HH:MM"`` → :class:`TimeWindow`; start == end is rejected (empty or
    all-day is ambiguous: leave the window out to allow any time)."""
    first, sep, second = text.partition("-")
    if not sep:
        raise ValueError(f"{quoted(text)} is not a window (use HH:MM-HH:MM, e.g. 22:00-06:00)")
    try:
        window = TimeWindow(parse_hhmm(first), parse_hhmm(second))
    except ValueError:
        raise ValueError(
            f"{quoted(text)} is not a window (use HH:MM-HH:MM, e.g. 22:00-06:00)"
        ) from None
    if window.start == window.end:
        raise ValueError(
            f"{quoted(text)}: start and end are the same; leave window out to allow any time"
        )
    return window


class Constraints(DocModel):
    window: str | None = None
    skip_dates: list[PlainDate] = Field(default_factory=list)
    max_concurrent: Annotated[StrictInt, Field(ge=1)] | None = None

    _window: TimeWindow | None = PrivateAttr(default=None)

    @field_validator("window", mode="plain", json_schema_input_type=str | None)
    @classmethod
    def _window_valid(cls, v: Any) -> str | None:
        if v is None:
            return None
        if not isinstance(v, str):
            raise ValueError(f'{quoted(v)} is not a window (write it in quotes: "22:00-06:00")')
        parse_window(v)
        return v

    @model_validator(mode="after")
    def _parse(self) -> Constraints:
        self._window = None if self.window is None else parse_window(self.window)
        return self

    @property
    def time_window(self) -> TimeWindow | None:
        return self._window


class Retry(DocModel):
    max: Annotated[StrictInt, Field(ge=1, le=MAX_RETRIES)]
    backoff: Backoff = timedelta(0)


class OnFailure(DocModel):
    retry: Retry | None = None


