"""The reaper (SPEC §4.3): closes what will never report — expired in-flight results,
pending execs, and expected pcs that never started by their exec's deadline (every exec
ends) — in one write transaction per step.

The deadlines are :mod:`kanade.core.lifecycle`'s; what each step does: docs/backend.md,
"The reaper".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy.engine import Connection

from kanade.backend.store import executions, results, unstarted
from kanade.backend.store.database import Database
from kanade.core.instants import Clock, system_clock
from kanade.core.lifecycle import NO_START_GRACE, pending_exec_cutoff, reaped_note
from kanade.core.statuses import ExecStatus, can_transition
from kanade.worker import Worker

log = structlog.get_logger(__name__)

# Rows closed per transaction at most: a huge backlog (backend down for a day) is
# worked off over a few ticks instead of one long write that stalls the projector.
MAX_PER_TICK = 5000
DEFAULT_INTERVAL_S = 10.0


@dataclass(frozen=True)
class ReapReport:
    reaped: list[str] = field(default_factory=list)  # result ids
    expired: list[str] = field(default_factory=list)  # exec ids
    closed: unstarted.Closed = field(default_factory=unstarted.Closed)

    def __bool__(self) -> bool:
        return bool(self.reaped or self.expired or self.closed)

    @property
    def no_result(self) -> int:
        """Expected pcs closed as no_result (never started by their exec's deadline)."""
        return self.closed.count

    @property
    def full(self) -> bool:
        """A full tick means a backlog: the next one should start at once."""
        backlog = self.closed.looked_at >= unstarted.MAX_EXECS_PER_PASS and bool(self.closed)
        return len(self.reaped) >= MAX_PER_TICK or len(self.expired) >= MAX_PER_TICK or backlog


def reap(conn: Connection, now: datetime, *, grace: timedelta = NO_START_GRACE) -> ReapReport:
    """One reaper pass at ``now`` inside the caller's transaction (``grace``: how long past
    an exec's deadline its unstarted pcs are closed)."""
    results.backfill_expiry(conn, MAX_PER_TICK)
    due = results.due_in_flight(conn, now, MAX_PER_TICK)
    results.mark_reaped(
        conn, [(rid, reaped_note(expires_at, timeout)) for rid, _, expires_at, timeout in due]
    )
    stale = [
        exec_id
        for exec_id, status in executions.pending_since(
            conn, pending_exec_cutoff(now), MAX_PER_TICK
        )
        if can_transition(status, ExecStatus.EXPIRED)
    ]
    executions.expire_pending(conn, stale, now)
    touched = {exec_id for _, exec_id, _, _ in due}
    executions.refresh_exec_counters(conn, touched, now)
    # Last: an exec whose rows were just reaped may now have nobody left to wait for.
    closed = unstarted.close_due(conn, now, grace=grace)
    return ReapReport([rid for rid, _, _, _ in due], stale, closed)


class Reaper(Worker):
    """Ticks every ``interval_s``; a failed tick (database busy, gone) backs off and retries."""

    name = "reaper"

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = system_clock,
        interval_s: float = DEFAULT_INTERVAL_S,
        grace: timedelta = NO_START_GRACE,
        on_reap: Callable[[ReapReport], None] | None = None,
    ) -> None:
        super().__init__(interval=interval_s)
        self._db = db
        self._clock = clock
        self._grace = grace
        self._on_reap = on_reap

    async def tick(self) -> ReapReport:
        now = self._clock()
        report = await self._db.write(lambda conn: reap(conn, now, grace=self._grace))
        if report:
            log.info(
                "reaped",
                results=len(report.reaped),
                expired_execs=len(report.expired),
                no_result=report.no_result,
                ended_execs=len(report.closed.ended),
            )
            if self._on_reap is not None:
                self._on_reap(report)
        return report

    async def step(self) -> bool:
        return (await self.tick()).full
