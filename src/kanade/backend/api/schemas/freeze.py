"""Responses of ``/api/freeze``."""

from __future__ import annotations

from pydantic import Field

from kanade.backend.api.schemas.common import Schema


class Freeze(Schema):
    """The stored freeze window (instants as the wire model writes them)."""

    from_: str | None = Field(alias="from")
    until: str | None
    by: str
    reason: str
    set_at: str


class FreezeStatus(Schema):
    frozen: bool
    freeze: Freeze | None


class FreezeCleared(Schema):
    frozen: bool
    freeze: Freeze | None
    cleared: bool
