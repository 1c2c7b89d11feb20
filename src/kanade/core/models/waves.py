"""A schedule's or an exec's ``rollout`` (SPEC §4.7): waves and the halt threshold."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from kanade.core.durations import Duration
from kanade.core.models.base import DocModel
from kanade.core.models.job import (
    Loc,
    check_slug,
    rule_errors,
)

# --- rollout ----------------------------------------------------------------------------------
Percent = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=100)]
Rate = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=1)]


class Wave(DocModel):
    """One wave: a group, a pc list, or a percentage of the remaining target."""

    group: str | None = None
    pcs: list[str] | None = None
    percent: Percent | None = None
    delay: Duration = timedelta(0)

    @field_validator("group")
    @classmethod
    def _group_slug(cls, v: str | None) -> str | None:
        return None if v is None else check_slug(v, "group")

    @field_validator("pcs")
    @classmethod
    def _pcs_slugs(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        if not v:
            raise ValueError("lists no pc")
        problems: list[tuple[Loc, str]] = []
        for i, pc in enumerate(v):
            try:
                check_slug(pc, "pc")
            except ValueError as exc:
                problems.append(((i,), str(exc)))
        if problems:
            raise rule_errors(problems)
        return v

    @model_validator(mode="after")
    def _exactly_one(self) -> Wave:
        given = [k for k in ("group", "pcs", "percent") if getattr(self, k) is not None]
        if len(given) != 1:
            got = " and ".join(given) if given else "none"
            raise ValueError(f"set exactly one of group, pcs or percent (got {got})")
        return self


class Rollout(DocModel):
    waves: list[Wave] = Field(min_length=1)
    # None: never halt automatically.
    halt_on_failure_rate: Rate | None = None


