"""The deciding workers that must run once across backend replicas (SPEC §9): the reaper,
the rollout runner, the approval sweeper, retention and the notification detector and
sender run only on the replica holding the ``deciders`` lease
(:mod:`kanade.backend.store.leases`), and write through a database *fenced* by it: a
replica that lost the lease commits nothing more.

Why a lease in the database and not in KV (where the central scheduler's is): these
workers decide from rows and write rows, so the lease check and the write are one
transaction; the reaper keeps closing overdue rows while the broker is away, as it did
on one backend; and clock skew between replicas cannot let two of them write.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.engine import Connection

from kanade.backend.store import leases
from kanade.backend.store.database import Database
from kanade.bus.tasks import cancel_and_wait
from kanade.core.instants import Clock, system_clock
from kanade.worker import Worker

log = structlog.get_logger(__name__)

LEASE = "deciders"
DEFAULT_TTL_S = 10.0

Team = Callable[[Database], list[Worker]]
"""Builds the workers to run while leading, on the fenced database they must write to."""


def replica_name(http_port: int) -> str:
    """A backend replica's stable name: its host and HTTP port (two replicas on one host
    listen on different ports)."""
    return f"{socket.gethostname()}:{http_port}"


class Deciders(Worker):
    """Compete for the lease every ``ttl/4``; run ``team`` while holding it. ``holder``
    names the replica (:func:`replica_name`): the same replica restarted takes its lease
    back at once instead of waiting out its previous incarnation's TTL."""

    name = "deciders-lease"

    def __init__(
        self,
        db: Database,
        team: Team,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        holder: str,
        clock: Clock = system_clock,
        monotonic: Callable[[], float] = time.monotonic,
        lease: str = LEASE,
    ) -> None:
        super().__init__(interval=ttl_s / 4)
        self._db = db
        self._team = team
        self.ttl = timedelta(seconds=ttl_s)
        self.holder = holder
        self.incarnation = f"{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._clock = clock
        self._mono = monotonic
        self.lease = lease
        self.term: int | None = None
        self._renewed: float | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def leading(self) -> bool:
        return bool(self._tasks) and self._fresh()

    def status(self) -> dict[str, Any]:
        return {"holder": self.holder, "incarnation": self.incarnation,
                "leader": self.leading, "term": self.term}  # fmt: skip

    def _fresh(self) -> bool:
        # Renewed within half a TTL: no contender can have taken over yet.
        return self._renewed is not None and self._mono() - self._renewed < self.ttl_s / 2

    @property
    def ttl_s(self) -> float:
        return self.ttl.total_seconds()

    async def step(self) -> None:
        now = self._clock()
        try:
            term = await self._db.write(
                lambda conn: leases.hold(
                    conn, self.lease, self.holder, self.incarnation, now, self.ttl
                )
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # database away: the lease lapses by itself
            log.debug("deciders lease attempt failed", error=str(exc))
            if self._tasks and not self._fresh():
                await self._step_down("renewals failed")
            return
        if term is None:
            if self._tasks:
                await self._step_down("taken over")
            self.term = None
            return
        self._renewed = self._mono()
        if self._tasks and term != self.term:
            await self._step_down("lost in between")
        if not self._tasks:
            self._lead(term)

    def _lead(self, term: int) -> None:
        self.term = term
        fenced = self._db.fenced(self._fence(term))
        self._tasks = [asyncio.create_task(w.run(), name=w.label) for w in self._team(fenced)]
        log.info("deciders lease acquired: reaper, rollouts, approvals, retention and "
                 "notifications run here",
                 holder=self.holder, term=term)  # fmt: skip

    def _fence(self, term: int) -> Callable[[Connection], None]:
        def fence(conn: Connection) -> None:
            leases.check(conn, self.lease, self.holder, term)

        return fence

    async def _step_down(self, why: str) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        log.warning("deciders lease lost; reaper, rollouts, approvals, retention and "
                    "notifications stopped here",
                    holder=self.holder, term=self.term, why=why)  # fmt: skip
        self.term = None

    async def resign(self) -> None:
        """Stop competing, stop the team and end our term at once: a standby takes over
        at its next attempt instead of after the TTL."""
        self.stop()
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        term, self.term = self.term, None
        if term is not None:
            now = self._clock()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._db.write(
                    lambda conn: leases.release(conn, self.lease, self.holder, term, now)), 5.0)
