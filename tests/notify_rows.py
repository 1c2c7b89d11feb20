"""Rows the notification tests start from (store and worker suites): a webhook, and facts as
their writers leave them — an exec that failed, a halted rollout."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Connection

from kanade.backend.store import executions, results, webhooks
from kanade.backend.store.tables import rollouts as rollouts_table

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def add_webhook(conn: Connection, wid: str = "ops", **kw: Any) -> dict[str, Any]:
    hook = {
        "webhook_id": wid,
        "kind": "generic",
        "url": "http://127.0.0.1:9/hook",
        "secret": "k" * 32,
        "events": ["exec.failed", "schedule.skipped", "schedule.missed", "agent.offline",
                   "rollout.halted", "agent.quarantined"],
        "enabled": True,
        "offline_after_s": 600.0,
        "created_at": T0,
        "created_by": "ops",
        "updated_at": T0,
        "updated_by": "ops",
    } | kw  # fmt: skip
    webhooks.add_webhook(conn, hook)
    return hook


def failed_exec(conn: Connection, exec_id: str, at: datetime, failing: int = 1) -> None:
    """An exec of two pcs that completed at ``at`` with ``failing`` of them failed, as the
    projector leaves it (the exec record, the results, the counters)."""
    pcs = ["pc-a", "pc-b"]
    record = {
        "exec_id": exec_id, "kind": "job", "job_id": "hello", "version": "1",
        "target": {"pcs": pcs}, "expected_pcs": pcs, "expected_count": len(pcs),
        "status": "pending", "initiated_by": "alice", "schedule_id": None, "nominal_time": None,
        "created_at": at, "request_id": "req-" + exec_id,
    }  # fmt: skip
    executions.upsert_executions(conn, [record], at)
    results.upsert_finished(
        conn,
        [
            {"result_id": f"{exec_id}-{pc}", "exec_id": exec_id, "request_id": "req-" + exec_id,
             "pc_id": pc, "job_id": "hello", "version": "1", "state": "finished",
             "exit_code": 3 if i < failing else 0, "skipped": False, "stdout": "", "stderr": "",
             "stdout_bytes": 0, "stderr_bytes": 0, "stdout_ref": None, "stderr_ref": None,
             "started_at": at, "finished_at": at, "attempts": 1, "note": None,
             "schedule_id": None, "nominal_time": None, "recorded_at": at, "timeout_s": None}
            for i, pc in enumerate(pcs)
        ],
    )  # fmt: skip
    executions.refresh_exec_counters(conn, [exec_id], at)


def halt(conn: Connection, rollout_id: str, at: datetime) -> None:
    conn.execute(
        update(rollouts_table)
        .where(rollouts_table.c.rollout_id == rollout_id)
        .values(status="halted", current_wave=1, updated_at=at, reason="wave 0: too many failed")
    )
