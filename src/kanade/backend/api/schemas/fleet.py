"""Responses of ``/api/results``, ``/api/agents`` and ``/api/schemas``."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kanade.backend.api.schemas.common import Instant, Schema
from kanade.backend.api.schemas.execs import ResultRow


class ResultPage(Schema):
    items: list[ResultRow]
    total: int
    limit: int
    offset: int


class AgentUpdateState(Schema):
    """Self-update (SPEC §3.8) as the agent last reported it."""

    state: str
    target: str | None = None
    quarantined: list[str] = []
    error: str | None = None


class Agent(Schema):
    """An agent as its last heartbeat left it, with ``status`` from ``last_seen``."""

    pc_id: str
    hostname: str
    agent_version: str
    os_family: str
    os_version: str
    boot_time: Instant | None
    cpu_percent: float
    rss_bytes: int
    groups: list[str]
    schedule_set_version: str | None
    last_command_at: Instant | None
    queue_length: int
    running: int
    agent_update: AgentUpdateState | None = None
    disk_full: bool = Field(description="its data directory is full: it refuses new work")
    disk_error: str | None = Field(description="why the disk counts as full")
    disk_free_bytes: int | None = Field(description="free bytes in its data directory")
    held_messages: int = Field(
        description="results and events held in memory because its disk would not take them"
    )
    last_seen: Instant
    first_seen: Instant
    stopped_at: Instant | None = None
    """When the agent said it was stopping (a clean stop): offline since then."""
    local_config: dict[str, Any] | None = None
    """Settings the agent was started with (flags, config file) where they differ from the
    built-in defaults: the base its KV config layers apply over."""
    static_groups: list[str] | None = None
    """The groups of its own ``--group`` flags (no KV change removes them)."""
    status: str


class AgentPage(Schema):
    items: list[Agent]
    total: int
    limit: int
    offset: int


JsonSchema = dict[str, Any]
"""A JSON Schema document (``/api/schemas/job``, ``/api/schemas/schedule``)."""
