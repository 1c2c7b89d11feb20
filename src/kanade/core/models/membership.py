"""A pc's group membership as kept in KV ``kanade_groups/<pc_id>`` (SPEC §3.2, §3.7): each
group with the instant the pc joined it, on the backend's clock.

``since`` is what makes "a group command reaches a pc only if it was a member when the
command was issued" checkable by the agent whatever the broker replays: the command's
signed ``issued_at`` and the signed ``since`` both come from the backend's clock.

Layout: the JSON list of names it always was, plus one object with the instants —
``["ops", "web", {"since": {"ops": "2025-01-01T00:00:00Z", "web": "..."}}]`` — so a reader
from before ``since`` (it keeps the strings of the list) still reads the groups: agents and
backends of both versions coexist. A group without an instant (a value written before, or
an entry that does not parse) has ``since`` None, and the agent then admits its commands
from its enrolment on, as before (docs/agent.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import Field, ValidationError, model_validator

from kanade.core.instants import as_utc, format_instant, parse_instant
from kanade.core.models.base import WireModel


def _since(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return as_utc(value)
    try:
        return parse_instant(value)
    except ValueError:
        return None


class Membership(WireModel):
    groups: dict[str, datetime | None] = Field(default_factory=dict)
    """group → when the pc joined it (None: not recorded, a value from before ``since``)."""

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        """The stored list: its strings are the groups, its first object with a
        ``since`` mapping gives their instants (anything else in it is ignored)."""
        if not isinstance(value, list):
            return value
        since: dict[Any, Any] = next(
            (
                item["since"]
                for item in value
                if isinstance(item, dict) and isinstance(item.get("since"), dict)
            ),
            {},
        )
        return {"groups": {g: _since(since.get(g)) for g in value if isinstance(g, str)}}

    @property
    def names(self) -> list[str]:
        return sorted(self.groups)

    def since(self, group: str) -> datetime | None:
        return self.groups.get(group)

    def with_groups(self, wanted: Iterable[str], now: datetime) -> Membership:
        """Exactly ``wanted``: groups kept keep their ``since``, new ones joined ``now``
        (leaving and joining again starts afresh)."""
        return Membership(groups={g: self.groups.get(g, now) for g in wanted})

    def encode(self) -> bytes:
        since = {g: format_instant(s) for g, s in sorted(self.groups.items()) if s is not None}
        return json.dumps([*self.names, {"since": since}], separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Membership:
        """A stored value; anything but a list is no membership at all."""
        if not raw:
            return cls()
        try:
            value = json.loads(raw)
        except ValueError:
            return cls()
        if not isinstance(value, list):
            return cls()
        try:
            return cls.model_validate(value)
        except ValidationError:
            return cls()


__all__ = ["Membership"]
