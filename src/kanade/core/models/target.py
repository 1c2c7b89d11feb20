"""Targets: which machines a job runs on (SPEC §2.2 ``target``), and matching."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field, field_validator, model_validator

from kanade.core.ids import SLUG_RULE, is_slug
from kanade.core.models.base import DocModel


def _check_slugs(values: list[str], what: str) -> list[str]:
    for i, v in enumerate(values):
        if not is_slug(v):
            raise ValueError(f"{what}[{i}] {v!r} {SLUG_RULE}")
    # Order is kept (it is what the user wrote) but duplicates are dropped.
    return list(dict.fromkeys(values))


class Target(DocModel):
    """The union of: every agent (``all``), members of ``groups``, and ``pcs``."""

    all: bool = False
    groups: list[str] = Field(default_factory=list)
    pcs: list[str] = Field(default_factory=list)

    @field_validator("groups")
    @classmethod
    def _groups_are_slugs(cls, v: list[str]) -> list[str]:
        return _check_slugs(v, "group")

    @field_validator("pcs")
    @classmethod
    def _pcs_are_slugs(cls, v: list[str]) -> list[str]:
        return _check_slugs(v, "pc")

    @model_validator(mode="after")
    def _selects_something(self) -> Target:
        if not (self.all or self.groups or self.pcs):
            raise ValueError("selects no machine: set all: true, or list groups or pcs")
        return self

    def matches(self, pc_id: str, groups: Iterable[str]) -> bool:
        """Whether the agent ``pc_id`` with membership ``groups`` is targeted."""
        if self.all or pc_id in self.pcs:
            return True
        return not set(self.groups).isdisjoint(groups)

    def describe(self) -> str:
        if self.all:
            return "all"
        parts = [f"group:{g}" for g in self.groups] + [f"pc:{p}" for p in self.pcs]
        return ",".join(parts)
