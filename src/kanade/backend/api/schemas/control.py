"""Responses of the stop controls and fleet state: revocations, kill, ping, config layers,
groups."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kanade.backend.api.schemas.common import Instant, OpenSchema, Schema


class Revoked(Schema):
    job_id: str
    revoked: bool
    was_revoked: bool
    revoked_at: str
    by: str
    reason: str


class Unrevoked(Schema):
    job_id: str
    revoked: bool
    was_revoked: bool


class Revocation(Schema):
    job_id: str
    revoked_at: str | None
    by: str | None
    reason: Any
    """As stored in KV (a string when this backend wrote it)."""


class RevocationList(Schema):
    items: list[Revocation]
    total: int


class JobDeleted(Schema):
    job_id: str
    version: str
    deleted: bool
    revoked: bool
    revoked_at: str


class Killed(Schema):
    exec_id: str
    job_id: str
    previous_status: str
    status: str
    kill_sent: bool
    cancelled_queued: int
    cancelled_subjects: list[str]


class Pong(OpenSchema):
    """A fresh heartbeat of the agent (its wire fields) and the round trip in ms."""

    schema_: int = Field(alias="schema")
    pc_id: str
    rtt_ms: float


class ConfigLayers(Schema):
    layers: dict[str, dict[str, Any]]
    """layer key (``global``, ``group.<g>``, ``pc.<pc_id>``) → its settings."""
    total: int


class ConfigLayer(Schema):
    layer: str
    settings: dict[str, Any]


class ConfigUnset(Schema):
    layer: str
    settings: dict[str, Any]
    removed: list[str]


class EffectiveConfig(Schema):
    pc_id: str
    known_agent: bool
    groups: list[str]
    values: dict[str, Any]
    sources: dict[str, str]
    """key → the layer that set it (``default`` for built-ins)."""
    warnings: list[str]
    layers: dict[str, dict[str, Any]]
    note: str


class Group(Schema):
    group: str
    members: list[str]
    """pcs in the group by KV membership."""
    reported: list[str]
    """agents that report the group in their heartbeats."""


class GroupList(Schema):
    items: list[Group]
    total: int
    membership: dict[str, list[str]]
    """pc → its KV groups."""


class Membership(Schema):
    pc_id: str
    groups: list[str]
    since: dict[str, Instant | None] = Field(default_factory=dict)
    """group → when the pc joined it (backend clock): the group's commands issued before
    never reach it (SPEC §3.2); null for a membership recorded before this was kept."""
    previous: list[str]
    changed: bool
    agent_flag_groups: list[str] = Field(default_factory=list)
    """The groups of the agent's own ``--group`` flags (or config file), as its heartbeat
    reports them: no KV change removes them (``DELETE`` only answers it)."""


class MembersAdded(Schema):
    group: str
    items: list[Membership]
