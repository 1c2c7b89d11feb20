"""Responses of ``/api/results``, ``/api/agents`` and ``/api/schemas``."""

from __future__ import annotations

from typing import Any

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
    last_seen: Instant
    first_seen: Instant
    status: str


class AgentPage(Schema):
    items: list[Agent]
    total: int
    limit: int
    offset: int


JsonSchema = dict[str, Any]
"""A JSON Schema document (``/api/schemas/job``, ``/api/schemas/schedule``)."""
