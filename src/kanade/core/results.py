"""Building result and EventStarted messages: one place for the agent's reporting rules."""

from __future__ import annotations

import re
from datetime import datetime

from kanade.core.ids import result_id_for
from kanade.core.models.wire import Command, EventStarted, Result

_OUTPUT_DIGEST = re.compile(r"\.([0-9a-f]{64})$")


def output_object_name(result_id: str, stream: str, sha256: str) -> str:
    """The outputs-store name of a result's full ``stream``, carrying its content's sha256.

    Every agent may write to the outputs store (the broker cannot scope object names per
    pc), so a name alone proves nothing; the digest travels inside the result, which only
    the pc's own identity can publish, and the backend checks it on every read: another
    agent can destroy an output it should not touch, but never pass off its own as it.
    """
    return f"{result_id}/{stream}.{sha256}"


def output_object_digest(name: str) -> str | None:
    """The sha256 an output object's name promises, None for a name without one."""
    found = _OUTPUT_DIGEST.search(name)
    return found.group(1) if found else None


def _decode_capped(data: bytes) -> str:
    # Undecodable bytes are replaced, never fatal (SPEC §3.4).
    return data.decode("utf-8", errors="replace")


def event_started(cmd: Command, pc_id: str, started_at: datetime) -> EventStarted:
    return EventStarted(
        result_id=result_id_for(cmd.request_id, pc_id),
        request_id=cmd.request_id,
        exec_id=cmd.exec_id,
        pc_id=pc_id,
        job_id=cmd.job_id,
        version=cmd.version,
        started_at=started_at,
        timeout_s=cmd.timeout_s,
        schedule_id=cmd.schedule_id,
    )


def _base(cmd: Command, pc_id: str, agent_version: str | None) -> dict[str, object]:
    return {
        "result_id": result_id_for(cmd.request_id, pc_id),
        "request_id": cmd.request_id,
        "exec_id": cmd.exec_id,
        "pc_id": pc_id,
        "job_id": cmd.job_id,
        "version": cmd.version,
        "schedule_id": cmd.schedule_id,
        "nominal_time": cmd.nominal_time,
        "agent_version": agent_version,
    }


def skipped_result(
    cmd: Command,
    pc_id: str,
    *,
    exit_code: int,
    reason: str,
    now: datetime,
    agent_version: str | None = None,
) -> Result:
    """A synthetic result: the script did not run; ``reason`` is in stderr and the note."""
    return Result.model_validate(
        {
            **_base(cmd, pc_id, agent_version),
            "exit_code": exit_code,
            "skipped": True,
            "stderr": reason,
            "stderr_bytes": len(reason.encode()),
            "finished_at": now,
            "attempts": 0,
            "note": _join_notes(cmd.notes, reason),
        }
    )


def _join_notes(*parts: list[str] | str | None) -> str | None:
    flat: list[str] = []
    for p in parts:
        if isinstance(p, list):
            flat.extend(p)
        elif p:
            flat.append(p)
    return "; ".join(flat) or None


def run_result(
    cmd: Command,
    pc_id: str,
    *,
    exit_code: int,
    stdout: bytes,
    stderr: bytes,
    stdout_total: int,
    stderr_total: int,
    stdout_ref: str | None,
    stderr_ref: str | None,
    started_at: datetime,
    finished_at: datetime,
    attempts: int,
    note: str | None,
    agent_version: str | None = None,
) -> Result:
    """The result of a script that ran (``stdout``/``stderr`` are the capped inline heads)."""
    notes: list[str] = list(cmd.notes)
    if note:
        notes.append(note)
    if stdout_ref:
        notes.append(f"stdout truncated inline at {len(stdout)} of {stdout_total} bytes")
    if stderr_ref:
        notes.append(f"stderr truncated inline at {len(stderr)} of {stderr_total} bytes")
    return Result.model_validate(
        {
            **_base(cmd, pc_id, agent_version),
            "exit_code": exit_code,
            "stdout": _decode_capped(stdout),
            "stderr": _decode_capped(stderr),
            "stdout_bytes": stdout_total,
            "stderr_bytes": stderr_total,
            "stdout_ref": stdout_ref,
            "stderr_ref": stderr_ref,
            "started_at": started_at,
            "finished_at": finished_at,
            "attempts": attempts,
            "note": _join_notes(notes),
        }
    )


def unknown_outcome_result(
    cmd: Command,
    pc_id: str,
    *,
    launched_at: datetime,
    now: datetime,
    agent_version: str | None = None,
) -> Result:
    """The agent stopped while the script may have been running (SPEC §3.2).

    Running it again could do the work twice, so it is reported, never re-run.
    """
    reason = "outcome unknown: the agent stopped while this script was running; it was not re-run"
    return Result.model_validate(
        {
            **_base(cmd, pc_id, agent_version),
            "exit_code": -1,
            "skipped": False,
            "stderr": reason,
            "stderr_bytes": len(reason),
            "started_at": launched_at,
            "finished_at": now,
            "attempts": 1,
            "note": _join_notes(cmd.notes, reason),
        }
    )
