"""The structured outcomes of a scheduler tick, logged and counted by both schedulers.

* :class:`Fire` — run this occurrence now (the idempotency key is ``occurrence_id``);
* :class:`Skip` — this occurrence will not run, and why (``reason`` is a stable code,
  ``detail`` a sentence for people; ``exit_code`` 125 when it must be reported as a
  synthetic skipped result because its starting deadline passed);
* :class:`Missed` — occurrences that came due while the scheduler could not fire them
  (downtime, or superseded by a later occurrence in the same tick) and were not run.

``Skip.quiet`` marks skips that are not skipped *fires*: a dormant schedule (disabled,
outside ``active``) and a reconcile poll held by a gate. Schedulers log them at debug level
and do not count them in the "skipped" metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from kanade.core import exitcodes

SkipReason = Literal[
    "disabled",
    "inactive",
    "outside_window",
    "skip_date",
    "frozen",
    "deadline_passed",
]

QUIET_REASONS: Final[frozenset[str]] = frozenset({"disabled", "inactive"})


@dataclass(frozen=True)
class Fire:
    schedule_id: str
    nominal: datetime
    occurrence_id: str
    deadline_at: datetime | None
    """Latest start (``nominal + starting_deadline``): goes into ``Command.deadline_at``."""
    late: timedelta
    """How long after ``nominal`` the decision was made."""
    caught_up: bool = False
    """True when this is the one occurrence run on recovery by ``catchup: once``."""

    kind: Literal["fire"] = "fire"


@dataclass(frozen=True)
class Skip:
    schedule_id: str
    nominal: datetime
    occurrence_id: str
    reason: SkipReason
    detail: str
    quiet: bool = False

    kind: Literal["skip"] = "skip"

    @property
    def exit_code(self) -> int | None:
        """The reserved exit code to report, for a skip that becomes a synthetic result."""
        return exitcodes.DEADLINE_PASSED if self.reason == "deadline_passed" else None


@dataclass(frozen=True)
class Missed:
    schedule_id: str
    nominals: tuple[datetime, ...]
    more: bool = False
    """True when there were more missed occurrences than listed."""

    kind: Literal["missed"] = "missed"


Decision = Fire | Skip | Missed
