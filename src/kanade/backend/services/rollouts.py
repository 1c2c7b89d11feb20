"""Durable rollouts as operators see them (SPEC §4.7): list and show with per-wave progress,
resume a halted rollout, abort one.

The data model and why no wave is ever sent twice: :mod:`kanade.backend.store.rollouts` and
:mod:`kanade.backend.workers.rollouts` (the runner that sends the waves). Creation is part of
an exec (:mod:`kanade.backend.services.execs`) or a scheduled fire.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from kanade.backend.errors import Conflict, NotFound
from kanade.backend.messaging.exec_events import publish_audit_once, publish_exec_status
from kanade.backend.store import executions, unstarted
from kanade.backend.store import rollouts as store
from kanade.backend.store.database import Database
from kanade.backend.store.executions import set_exec_status
from kanade.bus.connection import Bus
from kanade.core.msgids import audit_msg_id
from kanade.core.statuses import (
    EXEC_TRANSITIONS,
    ROLLOUT_TRANSITIONS,
    ExecStatus,
    RolloutStatus,
    is_terminal,
    sources,
)

_WAVE_VIEW = (
    "idx", "kind", "label", "pcs", "delay_s", "state", "due_at", "request_id", "claimed_at",
    "dispatched_at", "settled_at", "succeeded", "failed", "skipped", "missing", "failure_rate",
    "verdict",
)  # fmt: skip

_ROLLOUT_VIEW = (
    "rollout_id", "exec_id", "job_id", "version", "status", "halt_on_failure_rate",
    "current_wave", "wave_count", "spec", "created_by", "created_at", "updated_at",
    "finished_at", "reason",
)  # fmt: skip


def rollout_view(conn: Connection, row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """A rollout with per-wave progress (live counts for waves sent but not settled)."""
    waves = store.waves_of(conn, str(row["rollout_id"]))
    by_wave = store.rows_by_wave(conn, str(row["exec_id"]))
    out_waves = []
    for w in waves:
        view = {k: w[k] for k in _WAVE_VIEW}
        view["index"] = view.pop("idx")
        view["size"] = len(w["pcs"])
        progress = store.progress_of(w, row, by_wave.get(str(w["request_id"]), {}), now)
        view["progress"] = None if progress is None else progress.to_dict()
        out_waves.append(view)
    out = {k: row[k] for k in _ROLLOUT_VIEW}
    out["waves"] = out_waves
    out["sent_pcs"] = sum(len(w["pcs"]) for w in waves if w["dispatched_at"] is not None)
    out["total_pcs"] = sum(len(w["pcs"]) for w in waves)
    return out


def _require(conn: Connection, rollout_id: str) -> dict[str, Any]:
    row = store.get_row(conn, rollout_id)
    if row is None:
        raise NotFound(f"rollout {rollout_id!r} not found", rollout_id=rollout_id)
    return row


def resume(conn: Connection, rollout_id: str, now: datetime) -> int:
    """``halted → running``; the next wave is due at once (the operator decided). Returns
    its index."""
    row = _require(conn, rollout_id)
    if row["status"] != RolloutStatus.HALTED:
        raise Conflict(
            f"rollout {rollout_id!r} is {row['status']}; only a halted rollout can be resumed",
            rollout_id=rollout_id,
            status=row["status"],
        )
    idx = int(row["current_wave"])
    exec_row = executions.get_execution(conn, str(row["exec_id"]))
    if exec_row is not None and is_terminal(EXEC_TRANSITIONS, str(exec_row["status"])):
        # Its deadline passed while it was halted: the unsent pcs were closed as no_result
        # and the exec ended (SPEC §4.3); sending more now would run under an ended exec.
        raise Conflict(
            f"rollout {rollout_id!r} stayed halted past its exec's deadline and its exec "
            f"is {exec_row['status']}; start a new exec (kanade exec) to reach the rest",
            rollout_id=rollout_id,
            status=row["status"],
        )
    if not store.resume_halted(conn, rollout_id, idx, now):
        raise Conflict(f"rollout {rollout_id!r} changed concurrently; retry")
    return idx


@dataclass(frozen=True)
class Aborted:
    cancelled_waves: list[int]
    in_flight_wave: int | None  # a wave already being sent when the abort landed
    exec_cancelled: bool


def abort(conn: Connection, rollout_id: str, reason: str | None, now: datetime) -> Aborted:
    """``running|halted → aborted``: waves not yet claimed are cancelled and never sent;
    the exec becomes ``cancelled``. Waves already sent keep running (``kanade kill``
    stops them)."""
    row = _require(conn, rollout_id)
    if row["status"] not in sources(ROLLOUT_TRANSITIONS, RolloutStatus.ABORTED):
        raise Conflict(
            f"rollout {rollout_id!r} is {row['status']}; only a running or halted rollout "
            "can be aborted",
            rollout_id=rollout_id,
            status=row["status"],
        )
    moved = store.abort_from(
        conn, rollout_id, str(row["status"]), reason or "aborted by an operator", now
    )
    if moved is None:
        raise Conflict(f"rollout {rollout_id!r} changed concurrently; retry")
    waiting, dispatching = moved
    cancelled = set_exec_status(conn, str(row["exec_id"]), ExecStatus.CANCELLED, now)
    # The pcs of waves never sent will never start: closed as no_result at once (§4.3).
    unstarted.close_exec(conn, str(row["exec_id"]), now)
    return Aborted(waiting, dispatching, cancelled)


class RolloutService:
    """Reads and operator actions; ``on_change`` wakes the runner after a resume or abort."""

    def __init__(
        self,
        db: Database,
        bus: Callable[[], Bus],
        *,
        clock: Callable[[], datetime],
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        self._on_change = on_change

    async def list_rollouts(
        self, *, status: str | None, job_id: str | None, limit: int, offset: int
    ) -> dict[str, Any]:
        now = self._clock()

        def read(conn: Connection) -> dict[str, Any]:
            total, rows = store.list_rows(
                conn, status=status, job_id=job_id, limit=limit, offset=offset
            )
            items = [rollout_view(conn, r, now) for r in rows]
            return {"items": items, "total": total, "limit": limit, "offset": offset}

        result: dict[str, Any] = await self._db.read(read)
        return result

    async def get_rollout(self, rollout_id: str) -> dict[str, Any]:
        now = self._clock()
        view: dict[str, Any] = await self._db.read(
            lambda conn: rollout_view(conn, _require(conn, rollout_id), now)
        )
        return view

    async def resume(self, rollout_id: str, actor: str) -> dict[str, Any]:
        """Continue a halted rollout: its next wave is sent at once."""
        now = self._clock()
        idx: int = await self._db.write(lambda conn: resume(conn, rollout_id, now))
        await self._audit("rollout_resume", actor, rollout_id, {"next_wave": idx}, now)
        self._changed()
        return {"rollout_id": rollout_id, "status": RolloutStatus.RUNNING, "next_wave": idx}

    async def abort(self, rollout_id: str, actor: str, reason: str | None) -> dict[str, Any]:
        """End a running or halted rollout (see :func:`abort`)."""
        now = self._clock()
        out: Aborted = await self._db.write(lambda conn: abort(conn, rollout_id, reason, now))
        details = {
            "cancelled_waves": out.cancelled_waves,
            "in_flight_wave": out.in_flight_wave,
            "reason": reason,
        }
        if out.exec_cancelled:
            with contextlib.suppress(Exception):
                await publish_exec_status(self._bus(), rollout_id, ExecStatus.CANCELLED, actor, now)
        await self._audit("rollout_abort", actor, rollout_id, details, now)
        self._changed()
        return {
            "rollout_id": rollout_id,
            "status": RolloutStatus.ABORTED,
            "exec_cancelled": out.exec_cancelled,
            **details,
        }

    async def _audit(
        self, action: str, actor: str, rollout_id: str, details: dict[str, Any], at: datetime
    ) -> None:
        try:
            bus = self._bus()
        except Exception:
            return  # the broker is away: the change itself stands
        await publish_audit_once(
            bus,
            action,
            actor,
            {"rollout_id": rollout_id, **details},
            audit_msg_id(action, rollout_id, at),
            at,
        )

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()


# Moved to kanade.backend.store.rollouts: re-exported only until
# the scheduler (workers/scheduler/engine.py) imports it from there.
