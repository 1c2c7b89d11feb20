"""Stream messages → the rows the projectors write (SPEC §4.2).

``recorded_at`` is the stream's publish time, so re-projecting a wiped DB reproduces
the same rows; a message that does not decode is poison (logged, then acked).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from nats.aio.msg import Msg

from kanade.backend.workers.projection.worker import Decoded, Item, recorded_at
from kanade.core import subjects
from kanade.core.lifecycle import result_expires_at
from kanade.core.models.records import ExecRecord, ExecStatusRecord
from kanade.core.models.wire import EventStarted, Result, WireDecodeError, decode
from kanade.core.statuses import EXEC_TRANSITIONS

log = structlog.get_logger(__name__)

_STARTED_PREFIX = subjects.started_subject("")
_RESULT_PREFIX = subjects.result_subject("")


def started_row(ev: EventStarted, at: datetime) -> dict[str, Any]:
    return {
        "result_id": ev.result_id,
        "exec_id": ev.exec_id,
        "request_id": ev.request_id,
        "pc_id": ev.pc_id,
        "job_id": ev.job_id,
        "version": ev.version,
        "state": "in_flight",
        "exit_code": None,
        "skipped": False,
        "stdout": "",
        "stderr": "",
        "stdout_bytes": 0,
        "stderr_bytes": 0,
        "stdout_ref": None,
        "stderr_ref": None,
        "started_at": ev.started_at,
        "finished_at": None,
        "attempts": 1,
        "note": None,
        "schedule_id": ev.schedule_id,
        "nominal_time": None,
        "recorded_at": at,
        "timeout_s": ev.timeout_s,
        # From the stream time, so a replay reaps at the same instant (SPEC §4.3).
        "expires_at": result_expires_at(at, ev.timeout_s),
    }


def finished_row(res: Result, at: datetime) -> dict[str, Any]:
    return {
        "result_id": res.result_id,
        "exec_id": res.exec_id,
        "request_id": res.request_id,
        "pc_id": res.pc_id,
        "job_id": res.job_id,
        "version": res.version,
        "state": "finished",
        "exit_code": res.exit_code,
        "skipped": res.skipped,
        "stdout": res.stdout,
        "stderr": res.stderr,
        "stdout_bytes": res.stdout_bytes,
        "stderr_bytes": res.stderr_bytes,
        "stdout_ref": res.stdout_ref,
        "stderr_ref": res.stderr_ref,
        "started_at": res.started_at,
        "finished_at": res.finished_at,
        "attempts": res.attempts,
        "note": res.note,
        "schedule_id": res.schedule_id,
        "nominal_time": res.nominal_time,
        "recorded_at": at,
        # Not on the Result: an existing in_flight row keeps the EventStarted's value.
        "timeout_s": None,
        "expires_at": None,
    }


def decode_results(msgs: list[Msg]) -> Decoded:
    """Decoded items; the undecodable messages (poison: logged, to be acked); and the
    forgeries: a result or EventStarted whose ``pc_id`` is not the pc of its subject.
    The broker lets an agent publish only on its own ``kanade.result.<pc>`` and
    ``kanade.started.<pc>`` (SPEC §8.1), so the subject is the authenticated identity
    and a payload naming another pc must not become that pc's row."""
    out = Decoded()
    for msg in msgs:
        try:
            at = recorded_at(msg)
            if msg.subject.startswith(_STARTED_PREFIX):
                kind, prefix = "started", _STARTED_PREFIX
                row = started_row(decode(EventStarted, msg.data), at)
            elif msg.subject.startswith(_RESULT_PREFIX):
                kind, prefix = "result", _RESULT_PREFIX
                row = finished_row(decode(Result, msg.data), at)
            else:
                raise WireDecodeError(f"unexpected subject {msg.subject}")
        except (WireDecodeError, ValueError) as exc:
            log.warning("poison message skipped", subject=msg.subject, error=str(exc))
            out.poison.append(msg)
            continue
        if msg.subject != prefix + row["pc_id"]:
            log.warning(
                "message dropped: its pc_id is not the sender's",
                kind=kind,
                subject=msg.subject,
                pc_id=row["pc_id"],
            )
            out.forged.append((kind, msg))
            continue
        out.items.append(Item(msg, row, kind == "started"))
    return out


def decode_exec_records(msgs: list[Msg]) -> Decoded:
    """``kanade.exec.created.<id>`` carries the whole row; any other event
    (``kanade.exec.cancelled.<id>``, …) carries ``{"exec_id", "status"}``."""
    items: list[Item] = []
    poison: list[Msg] = []
    for msg in msgs:
        parts = msg.subject.split(".")
        event = parts[2] if len(parts) == 4 else ""
        try:
            if event == "created":
                items.append(Item(msg, decode(ExecRecord, msg.data).row()))
                continue
            record = decode(ExecStatusRecord, msg.data)
            if record.status not in EXEC_TRANSITIONS:
                raise ValueError(f"unknown status {record.status!r}")
            row = {
                "exec_id": record.exec_id,
                "status": record.status.value,
                # Absent in records of older backends: a decision without a time.
                "at": record.at,
                "by": None if record.by is None else record.by[:128],
            }
            if record.deadline_at is not None:  # an approval that sent the commands
                row["deadline_at"] = record.deadline_at
            items.append(Item(msg, row, status_only=True))
        except (WireDecodeError, ValueError, KeyError, TypeError) as exc:
            log.warning("poison exec record skipped", subject=msg.subject, error=str(exc))
            poison.append(msg)
    return Decoded(items, poison)
