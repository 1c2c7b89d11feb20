"""Response of ``/api/dashboard/summary``: the counts behind the overview's charts."""

from __future__ import annotations

from kanade.backend.api.schemas.common import Schema


class AgentCounts(Schema):
    alive: int
    stale: int
    offline: int
    total: int


class HourCounts(Schema):
    hour: str
    """The hour's start (ISO 8601, UTC)."""
    ok: int
    failed: int
    skipped: int
    running: int


class ExecCounts(Schema):
    by_status: dict[str, int]
    total: int
    with_failures: int


class DashboardSummary(Schema):
    now: str
    agents: AgentCounts
    results_by_hour: list[HourCounts]
    executions_24h: ExecCounts
