"""Schedule (SPEC §2.2): *when* and *where* to run a job.

The parts live beside it: :mod:`.when` (when shapes), :mod:`.constraints` (active range,
window, retries), :mod:`.waves` (rollout).

Combination rules of SPEC §2.3 that need the whole schedule (``per_target`` or
``max_concurrent`` or ``rollout`` with ``runs_on: agent``) are checked by
:class:`Schedule` itself and reported together, each at its own path.
"""

from __future__ import annotations

import re
from datetime import UTC, timedelta, tzinfo
from typing import Final, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kanade.core.durations import Jitter, StartingDeadline, quoted
from kanade.core.models.base import DocModel
from kanade.core.models.constraints import ActiveRange, Constraints, OnFailure, Retry
from kanade.core.models.job import (
    CTX_KNOWN_JOB_IDS,
    Loc,
    NonEmptyStr,
    check_slug,
    rule_errors,
)
from kanade.core.models.target import Target
from kanade.core.models.waves import Rollout
from kanade.core.models.when import When

RunsOn = Literal["backend", "agent"]
Catchup = Literal["skip", "once"]

_TZ_RE: Final = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$", re.ASCII)


# --- the schedule ---------------------------------------------------------------------------
def check_tz(value: str) -> str:
    """``local`` | ``utc`` | an IANA zone name known to ``zoneinfo``."""
    if value in ("local", "utc"):
        return value
    bad = ValueError(
        f"{quoted(value)} is not a time zone (use local, utc or an IANA name like Europe/Berlin)"
    )
    if len(value) > 64 or not _TZ_RE.match(value):
        raise bad
    try:
        ZoneInfo(value)
    except Exception:  # ZoneInfoNotFoundError, ValueError, OSError on odd names
        raise bad from None
    return value


class Schedule(DocModel):
    id: str
    job_id: str
    enabled: StrictBool = True
    description: str | None = None
    when: When
    target: Target
    rollout: Rollout | None = None
    jitter: Jitter = timedelta(0)
    runs_on: RunsOn = "backend"
    tz: NonEmptyStr = "local"
    active: ActiveRange | None = None
    constraints: Constraints | None = None
    on_failure: OnFailure | None = None
    starting_deadline: StartingDeadline | None = None
    catchup: Catchup = "once"

    @field_validator("id")
    @classmethod
    def _id_slug(cls, v: str) -> str:
        return check_slug(v)

    @field_validator("job_id")
    @classmethod
    def _job_known(cls, v: str, info: ValidationInfo) -> str:
        check_slug(v)
        ctx = info.context if isinstance(info.context, dict) else {}
        known = ctx.get(CTX_KNOWN_JOB_IDS)
        if known is not None and v not in known:
            raise ValueError(f"no job {v!r} exists; create the job first")
        return v

    @field_validator("tz")
    @classmethod
    def _tz_valid(cls, v: str) -> str:
        return check_tz(v)

    @field_validator("starting_deadline")
    @classmethod
    def _deadline_positive(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v <= timedelta(0):
            raise ValueError("must be longer than 0s (leave it out for no deadline)")
        return v

    @model_validator(mode="after")
    def _combinations(self) -> Schedule:
        if self.runs_on != "agent":
            return self
        # An agent fires on its own and knows nothing of the others: anything that
        # needs a fleet-wide view belongs to the backend.
        problems: list[tuple[Loc, str]] = []
        if self.when.per_target is not None:
            problems.append(
                (
                    ("when", "per_target"),
                    "needs runs_on: backend (one agent cannot know whether another "
                    "target member succeeded); use per_pc for runs_on: agent",
                )
            )
        if self.constraints is not None and self.constraints.max_concurrent is not None:
            problems.append(
                (
                    ("constraints", "max_concurrent"),
                    "needs runs_on: backend (agents cannot count each other's runs)",
                )
            )
        if self.rollout is not None:
            problems.append(
                (("rollout",), "needs runs_on: backend (the backend drives rollout waves)")
            )
        if problems:
            raise rule_errors(problems)
        return self

    def zone(self) -> tzinfo | None:
        """The schedule's time zone; None means the firing machine's local zone."""
        if self.tz == "local":
            return None
        if self.tz == "utc":
            return UTC
        return ZoneInfo(self.tz)

    @property
    def retry(self) -> Retry | None:
        return None if self.on_failure is None else self.on_failure.retry

