"""Every exec ends (SPEC §4.3): expected pcs that never started are closed as ``no_result``
rows and the exec then completes. The rule is :mod:`kanade.core.execends`; this module reads
what it needs (the exec, its rows, its rollout, newer execs of its job) and writes the rows.

Used by the reaper (execs whose deadline has passed, and any rejected or cancelled exec
still open, e.g. after a re-projection) and, in the same transaction as the decision, by
the services that reject, abort or kill an exec ("at once"). The narrative:
docs/backend.md, "Every exec ends".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Connection

from kanade.backend.store import executions, results, rollouts
from kanade.core.execends import (
    ExecView,
    RolloutView,
    WaveView,
    close_unstarted,
    superseding_exec,
)
from kanade.core.lifecycle import NO_START_GRACE, fallback_exec_deadline, no_start_due
from kanade.core.models.target import Target
from kanade.core.statuses import ExecStatus, WaveState

# Execs looked at per pass at most: each costs a few indexed reads.
MAX_EXECS_PER_PASS = 200

_SENT = (WaveState.DISPATCHING, WaveState.DISPATCHED, WaveState.SETTLED)


@dataclass
class Closed:
    """What one pass did: ``no_result`` rows written per exec, and execs it completed."""

    rows: dict[str, int] = field(default_factory=dict)
    ended: list[str] = field(default_factory=list)
    looked_at: int = 0

    @property
    def count(self) -> int:
        return sum(self.rows.values())

    def __bool__(self) -> bool:
        return bool(self.rows or self.ended)


def _rollout_view(conn: Connection, exec_id: str) -> RolloutView | None:
    row = rollouts.get_row(conn, exec_id)  # a rollout's id is the exec id it sends
    if row is None:
        return None
    waves = tuple(
        WaveView(
            index=int(w["idx"]),
            label=str(w["label"]),
            pcs=frozenset(str(pc) for pc in w["pcs"]),
            request_id=str(w["request_id"]),
            sent=w["state"] in _SENT,
        )
        for w in rollouts.waves_of(conn, exec_id)
    )
    return RolloutView(status=str(row["status"]), waves=waves)


def _target(raw: Mapping[str, Any] | None) -> Target | None:
    try:
        return Target.model_validate(raw or {})
    except ValidationError:
        return None


def _superseded(
    conn: Connection, row: Mapping[str, Any], deadline: datetime, missing: list[str]
) -> dict[str, str]:
    """pc → the newer exec of the same job that replaced this one's command on an address
    of that pc (the command stream keeps one message per address)."""
    mine = _target(row["target"])
    if mine is None or not missing:
        return {}
    newer = [
        (exec_id, t)
        for exec_id, raw in executions.newer_of_job(
            conn, str(row["job_id"]), after=row["created_at"], until=deadline
        )
        if (t := _target(raw)) is not None
    ]
    if not newer:
        return {}
    out: dict[str, str] = {}
    for pc in missing:
        by = superseding_exec(mine, str(row["job_id"]), pc, newer)
        if by is not None:
            out[pc] = by
    return out


def _close_one(
    conn: Connection, row: Mapping[str, Any], now: datetime, grace: timedelta, out: Closed
) -> None:
    exec_id = str(row["exec_id"])
    deadline = row["deadline_at"] or fallback_exec_deadline(row["created_at"])
    rollout = _rollout_view(conn, exec_id)
    reported = results.reported_pcs(conn, exec_id)
    expected = tuple(str(pc) for pc in row["expected_pcs"] or [])
    missing = sorted(set(expected) - reported)
    live = row["status"] in executions.LIVE_STATUSES
    by_deadline = row["status"] not in executions.CLOSED_EARLY
    superseded = (
        _superseded(conn, row, deadline, missing)
        if by_deadline and rollout is None and now >= no_start_due(deadline, grace)
        else {}
    )
    view = ExecView(
        exec_id=exec_id,
        job_id=str(row["job_id"]),
        status=str(row["status"]),
        request_id=str(row["request_id"]),
        expected_pcs=expected,
        deadline=deadline,
        rollout=rollout,
    )
    closing = close_unstarted(view, reported, now, grace=grace, superseded_by=superseded)
    if closing.rows:
        results.insert_no_results(
            conn,
            [
                results.no_result_row(
                    exec_id=exec_id,
                    request_id=r.request_id,
                    pc_id=r.pc_id,
                    job_id=str(row["job_id"]),
                    version=str(row["version"]),
                    at=r.at,
                    note=r.note,
                )
                for r in closing.rows
            ],
        )
        out.rows[exec_id] = len(closing.rows)
        executions.refresh_exec_counters(conn, [exec_id], now)
    if closing.ended:
        if live and executions.end_exec(conn, exec_id, now):
            out.ended.append(exec_id)
        executions.mark_ended(conn, exec_id, now)


def close_due(
    conn: Connection,
    now: datetime,
    *,
    grace: timedelta = NO_START_GRACE,
    limit: int = MAX_EXECS_PER_PASS,
) -> Closed:
    """One pass at ``now`` inside the caller's transaction: every exec whose deadline (plus
    ``grace``) has passed, and every rejected or cancelled one still open."""
    out = Closed()
    candidates = executions.ending_candidates(conn, now - grace, limit)
    out.looked_at = len(candidates)
    for row in candidates:
        _close_one(conn, row, now, grace, out)
    return out


def close_exec(
    conn: Connection, exec_id: str, now: datetime, *, grace: timedelta = NO_START_GRACE
) -> Closed:
    """Close what is due of one exec now — called right after a decision (reject, abort,
    kill) so its pcs that will never start say so at once."""
    out = Closed()
    row = executions.ending_row(conn, exec_id)
    if row is not None and row["status"] != ExecStatus.AWAITING_APPROVAL:
        out.looked_at = 1
        _close_one(conn, row, now, grace, out)
    return out
