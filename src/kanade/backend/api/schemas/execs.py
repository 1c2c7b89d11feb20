"""Responses of ``/api/exec``, ``/api/run`` and ``/api/executions``."""

from __future__ import annotations

from typing import Any

from kanade.backend.api.schemas.common import Instant, Schema


class ExecCreated(Schema):
    """An exec just created (or waiting in ``awaiting_approval``)."""

    exec_id: str
    kind: str
    job_id: str
    version: str
    expected_count: int
    expected_pcs: list[str]
    status: str
    rollout_id: str | None
    timeout_s: float | None = None
    """The script timeout of its command."""
    deadline_at: Instant | None = None
    """The exec's deadline: no pc starts it after this, and an expected pc that never
    did is then closed as ``no_result`` (null until its commands go out)."""


# The executions row, as two halves: a model lists its bases last-first, so
# ``class X(_ExecRowTail, _ExecRowHead)`` serialises the head's keys, then the tail's —
# the order the row's columns always had (``expected_pcs`` sits between, in the detail).
class _ExecRowHead(Schema):
    exec_id: str
    kind: str
    job_id: str
    version: str
    target: dict[str, Any]


class _ExecRowTail(Schema):
    expected_count: int
    status: str
    initiated_by: str
    schedule_id: str | None
    nominal_time: Instant | None
    created_at: Instant
    updated_at: Instant
    started_count: int
    finished_count: int
    failed_count: int
    skipped_count: int
    request_id: str
    inventory_hint: dict[str, Any] | None
    check_hint: dict[str, Any] | None
    no_result_count: int = 0
    """Expected pcs closed as ``no_result`` (never started; counted as finished and failed
    too)."""
    deadline_at: Instant | None = None
    """The exec's deadline (SPEC §4.3): expected pcs that never started are closed as
    ``no_result`` once it has passed (plus a grace), and a live exec then completes. Null
    until known (awaiting approval, a rollout not yet sent)."""
    ended_at: Instant | None = None
    """When it ended for good: every expected pc has a result or a ``no_result`` row and
    none can start any more (null until then)."""
    results_pruned_at: Instant | None = None
    """When retention first pruned some of its results (docs/retention.md): the counters
    are kept as they were, and a pc whose row is gone shows as ``pruned``."""


class _ExecRowHeadWithPcs(_ExecRowHead):
    expected_pcs: list[str]


class ExecutionSummary(_ExecRowTail, _ExecRowHead):
    """An executions row as listed (without ``expected_pcs``; ``expected_count`` says how
    many)."""


class ExecutionPage(Schema):
    items: list[ExecutionSummary]
    total: int
    limit: int
    offset: int


class ResultRow(Schema):
    """One pc's result of one exec (stdout/stderr hold a capped head)."""

    result_id: str
    exec_id: str
    request_id: str
    pc_id: str
    job_id: str
    version: str
    state: str
    exit_code: int | None
    skipped: bool
    stdout: str
    stderr: str
    stdout_bytes: int
    stderr_bytes: int
    stdout_ref: str | None
    stderr_ref: str | None
    started_at: Instant | None
    finished_at: Instant | None
    attempts: int
    note: str | None
    schedule_id: str | None
    nominal_time: Instant | None
    recorded_at: Instant
    timeout_s: float | None
    expires_at: Instant | None


class PendingResult(Schema):
    """An expected pc without a result row: ``pending`` while it has not reported (it is
    closed as ``no_result`` at the exec's deadline if it never does), ``pruned`` once
    retention removed its row."""

    pc_id: str
    exec_id: str
    state: str


class ExecutionDetail(_ExecRowTail, _ExecRowHeadWithPcs):
    """The exec row and, unless ``results=false``, one entry per expected pc."""

    results: list[ResultRow | PendingResult] | None = None
    """Absent (not null) with ``results=false``."""
