"""The reaper (SPEC §4.3): closes what will never report, so nothing stays open forever.

Each tick, in ONE write transaction (the projector's writer thread, so it never
races a batch):

* in_flight result rows whose ``expires_at`` has come (inclusive) become ``reaped``
  (exit -1, a note saying why); a late real result still replaces them, because the
  projector's UPSERT only refuses to overwrite ``finished`` rows;
* execs still ``pending`` an hour after creation become ``expired``;
* the counters of every touched exec are recomputed from its rows (never
  incremented), so a reap followed by the late result cannot count twice.

The deadlines are the pure functions of :mod:`kanade.core.lifecycle`; the clock is
injected so tests can stand exactly on a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from kanade.backend.store import writes
from kanade.backend.store.database import Database
from kanade.backend.store.tables import executions, results
from kanade.core.execstatus import can_transition
from kanade.core.lifecycle import (
    REAPED_EXIT_CODE,
    pending_exec_cutoff,
    reaped_note,
    result_expires_at,
)

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]

# Rows closed per transaction at most: a huge backlog (backend down for a day) is
# worked off over a few ticks instead of one long write that stalls the projector.
MAX_PER_TICK = 5000
DEFAULT_INTERVAL_S = 10.0


@dataclass(frozen=True)
class ReapReport:
    reaped: list[str] = field(default_factory=list)  # result ids
    expired: list[str] = field(default_factory=list)  # exec ids

    def __bool__(self) -> bool:
        return bool(self.reaped or self.expired)


def _backfill_expiry(conn: Connection) -> None:
    """Rows written before expires_at existed (revision 0002) get it computed once."""
    q = (
        select(results.c.result_id, results.c.recorded_at, results.c.timeout_s)
        .where(results.c.state == "in_flight", results.c.expires_at.is_(None))
        .limit(MAX_PER_TICK)
    )
    rows = [
        {"b_id": rid, "b_exp": result_expires_at(rec, timeout)}
        for rid, rec, timeout in conn.execute(q)
    ]
    if rows:
        conn.execute(
            update(results)
            .where(results.c.result_id == bindparam("b_id"))
            .values(expires_at=bindparam("b_exp")),
            rows,
        )


def reap(conn: Connection, now: datetime) -> ReapReport:
    """One reaper pass at ``now`` inside the caller's transaction."""
    _backfill_expiry(conn)
    due = conn.execute(
        select(results.c.result_id, results.c.exec_id, results.c.expires_at, results.c.timeout_s)
        .where(results.c.state == "in_flight", results.c.expires_at <= now)
        .order_by(results.c.expires_at)
        .limit(MAX_PER_TICK)
    ).all()
    if due:
        conn.execute(
            update(results)
            # Guarded by state: only an in_flight row is reaped, never a finished one.
            .where(results.c.result_id == bindparam("b_id"), results.c.state == "in_flight")
            .values(state="reaped", exit_code=REAPED_EXIT_CODE, note=bindparam("b_note")),
            [
                {"b_id": rid, "b_note": reaped_note(expires_at, timeout)}
                for rid, _, expires_at, timeout in due
            ],
        )
    stale = [
        exec_id
        for exec_id, status in conn.execute(
            select(executions.c.exec_id, executions.c.status)
            .where(
                executions.c.status == "pending",
                executions.c.created_at <= pending_exec_cutoff(now),
            )
            .limit(MAX_PER_TICK)
        )
        if can_transition(status, "expired")
    ]
    if stale:
        conn.execute(
            update(executions)
            .where(executions.c.exec_id == bindparam("b_id"), executions.c.status == "pending")
            .values(status="expired", updated_at=now),
            [{"b_id": e} for e in stale],
        )
    touched = {str(exec_id) for _, exec_id, _, _ in due}
    writes.refresh_exec_counters(conn, touched, now)
    return ReapReport([str(r[0]) for r in due], stale)


class Reaper:
    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = lambda: datetime.now(UTC),
        interval_s: float = DEFAULT_INTERVAL_S,
        on_reap: Callable[[ReapReport], None] | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._interval = interval_s
        self._on_reap = on_reap

    async def tick(self) -> ReapReport:
        now = self._clock()
        report = await self._db.write(lambda conn: reap(conn, now))
        if report:
            log.info("reaped", results=len(report.reaped), expired_execs=len(report.expired))
            if self._on_reap is not None:
                self._on_reap(report)
        return report

    async def run(self) -> None:
        """Tick forever; a failed tick (database busy, gone) is retried next interval."""
        while True:
            try:
                report = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reaper tick failed")
                report = ReapReport()
            # A full tick means a backlog: go again at once rather than in 10 s.
            full = len(report.reaped) >= MAX_PER_TICK or len(report.expired) >= MAX_PER_TICK
            await asyncio.sleep(0 if full else self._interval)
