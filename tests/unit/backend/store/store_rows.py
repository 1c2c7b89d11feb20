"""Row builders shared by the store tests (an exec record, a result row, a command)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kanade.core.models.wire import Command

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def exec_row(exec_id: str, expected: list[str]) -> dict[str, Any]:
    return {
        "exec_id": exec_id,
        "kind": "job",
        "job_id": "hello",
        "version": "1",
        "target": {"all": False, "groups": [], "pcs": expected},
        "expected_pcs": expected,
        "expected_count": len(expected),
        "status": "pending",
        "initiated_by": "anonymous",
        "schedule_id": None,
        "nominal_time": None,
        "created_at": T0,
        "request_id": "req-" + exec_id,
    }


def row(
    result_id: str, exec_id: str, pc: str, *, state: str, at: datetime, **kw: Any
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "result_id": result_id,
        "exec_id": exec_id,
        "request_id": "req-" + exec_id,
        "pc_id": pc,
        "job_id": "hello",
        "version": "1",
        "state": state,
        "exit_code": None,
        "skipped": False,
        "stdout": "",
        "stderr": "",
        "stdout_bytes": 0,
        "stderr_bytes": 0,
        "stdout_ref": None,
        "stderr_ref": None,
        "started_at": T0,
        "finished_at": None,
        "attempts": 1,
        "note": None,
        "schedule_id": None,
        "nominal_time": None,
        "recorded_at": at,
        "timeout_s": None,
    }
    if state == "finished":
        base.update(exit_code=0, finished_at=at, stdout="hi\n", stdout_bytes=3)
    base.update(kw)
    return base


def job_command(exec_id: str, at: datetime) -> Command:
    """The command of job ``j`` v1 (``true``, 60 s) to every pc, issued ``at``."""
    return Command.model_validate(
        {
            "exec_id": exec_id,
            "request_id": "q",
            "job_id": "j",
            "version": "1",
            "address": {"all": True},
            "issued_at": at.isoformat(),
            "shell": "sh",
            "script": "true",
            "timeout_s": 60,
        }
    )
