"""The retention worker (SPEC §4.12): every ``interval`` it prunes each table over its age or
count limit, in small batches, and deletes the output objects of the results it pruned.

Each batch is one short write transaction (:mod:`kanade.backend.store.retention`) on the one
writer thread the projectors use too, so a projector's write waits for one batch at most.
After a batch that made other writes wait, the worker pauses for nine times as long as the
batch took: under a steady stream of other writes (a backlog being projected) pruning holds
a tenth of the writer's time at most, and ingest goes on at nearly full pace (measured:
docs/performance.md); with the writer otherwise idle it goes on at once. The narrative:
docs/retention.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

import structlog
from nats.js.object_store import ObjectStore
from sqlalchemy.engine import Connection

from kanade.backend.store import retention as store
from kanade.backend.store.database import Database
from kanade.core.instants import Clock, format_instant, system_clock
from kanade.core.retention import DEFAULT_POLICY, TABLES, Policy
from kanade.worker import Worker

log = structlog.get_logger(__name__)

SHARE_WHEN_CONTENDED: Final = 0.1
"""While other writes wait, at most this share of the writer's time goes to pruning (the
pause after a batch is 9 x the time it took)."""
MIN_PAUSE_S: Final = 0.005
"""The least pause between batches: the event loop's other tasks run, and submit."""
MAX_PAUSE_S: Final = 10.0
"""The longest: one batch slowed down by a stalled disk says nothing about the next ones (a
200 s batch must not stop pruning for half an hour)."""
OBJECT_DELETES: Final = 16
"""Output objects deleted at once."""


def pause_after(took: float, *, contended: bool) -> float:
    """Seconds to wait after a batch that held the writer ``took`` seconds; ``contended``:
    other writes were waiting for it."""
    pause = took * (1 / SHARE_WHEN_CONTENDED - 1) if contended else 0.0
    return min(MAX_PAUSE_S, max(MIN_PAUSE_S, pause))


class RetentionObserver(Protocol):
    """What ``/metrics`` learns from the worker (``Metrics`` implements it)."""

    def on_pruned(self, table: str, rows: int) -> None: ...

    def on_objects_deleted(self, n: int) -> None: ...

    def on_retention_batch(self, seconds: float) -> None: ...

    def on_retention_run(self, finished_at: datetime, seconds: float, ok: bool) -> None: ...


@dataclass
class RunReport:
    """One pass: rows pruned per table (cascades included), objects deleted, how long."""

    started_at: datetime
    finished_at: datetime | None = None
    pruned: dict[str, int] = field(default_factory=dict)
    objects: int = 0
    objects_skipped: int = 0
    batches: int = 0
    duration_s: float = 0.0

    def record(self) -> dict[str, Any]:
        return {
            "started_at": format_instant(self.started_at),
            "finished_at": None if self.finished_at is None else format_instant(self.finished_at),
            "duration_s": round(self.duration_s, 3),
            "pruned": dict(sorted(self.pruned.items())),
            "objects": self.objects,
            "objects_skipped": self.objects_skipped,
            "batches": self.batches,
        }


class RetentionWorker(Worker):
    """Prunes every ``policy.interval``; a pass goes on batch after batch until every table
    is within its limits."""

    name = "retention"

    def __init__(
        self,
        db: Database,
        *,
        policy: Policy = DEFAULT_POLICY,
        clock: Clock = system_clock,
        outputs: Callable[[], Awaitable[ObjectStore]] | None = None,
        observer: RetentionObserver | None = None,
    ) -> None:
        super().__init__(interval=policy.interval.total_seconds())
        self._db = db
        self.policy = policy
        self._clock = clock
        self._outputs = outputs
        self._observer = observer

    async def step(self) -> bool:
        await self.run_once()
        return False

    async def run_once(self) -> RunReport:
        """One complete pass over every table (what each step does)."""
        t0 = time.perf_counter()
        report = RunReport(self._clock())
        ok = False
        try:
            for table in TABLES:
                await self._prune(table, report)
            ok = True
        finally:
            report.duration_s = time.perf_counter() - t0
            report.finished_at = self._clock()
            if self._observer is not None:
                self._observer.on_retention_run(report.finished_at, report.duration_s, ok)
        await self._db.write(lambda conn: store.note_last_run(conn, report.record(), self._clock()))
        if any(report.pruned.values()):
            log.info("retention pass", **report.record())
        return report

    # --- one table -----------------------------------------------------------------------
    async def _prune(self, table: str, report: RunReport) -> None:
        limit = self.policy.limit(table)
        batch = self.policy.batch
        if limit.max_age is not None:
            before = self._clock() - limit.max_age
            await self._until_done(table, report, lambda n: self._by_age(table, before, n))
        if limit.max_rows is None:
            return
        if limit.per == "schedule":
            keep = limit.max_rows
            await self._until_done(
                table,
                report,
                lambda n: lambda c: store.prune_log_by_count(c, table, keep=keep, limit=n),
            )
            return
        total = await self._db.read(lambda c: store.count_rows(c, table))
        excess = total - limit.max_rows
        while excess > 0:
            pruned = await self._batch(table, report, self._oldest(table, min(batch, excess)))
            if not pruned.rows and not pruned.cascaded:
                return  # nothing prunable left (open execs, …)
            excess -= pruned.rows

    def _by_age(self, table: str, before: datetime, n: int) -> Callable[[Connection], store.Pruned]:
        now = self._clock()
        if table in store.LOGS:
            return lambda c: store.prune_log_by_age(c, table, before=before, limit=n)
        if table == "enroll_tokens":
            return lambda c: store.prune_enroll_tokens(c, before=before, limit=n, now=now)
        return self._oldest(table, n, before=before)

    def _oldest(
        self, table: str, n: int, *, before: datetime | None = None
    ) -> Callable[[Connection], store.Pruned]:
        now = self._clock()
        if table == "results":
            return lambda c: store.prune_results(c, before=before, limit=n, now=now)
        if table == "executions":
            return lambda c: store.prune_executions(c, before=before, limit=n, now=now)
        if table == "inventory_history":
            return lambda c: store.prune_inventory_history(c, before=before, limit=n)
        if table == "audit":
            return lambda c: store.prune_audit(c, before=before, limit=n, now=now)
        raise ValueError(f"no count limit for {table}")

    async def _until_done(
        self,
        table: str,
        report: RunReport,
        work: Callable[[int], Callable[[Connection], store.Pruned]],
    ) -> None:
        n = self.policy.batch
        while True:
            pruned = await self._batch(table, report, work(n))
            if max(pruned.rows, *pruned.cascaded.values(), 0) < n:
                return

    async def _batch(
        self, table: str, report: RunReport, work: Callable[[Connection], store.Pruned]
    ) -> store.Pruned:
        began: list[float] = []

        def timed(conn: Connection) -> store.Pruned:
            began.append(time.perf_counter())  # not the wait for the writes queued before
            return work(conn)

        pruned = await self._db.write(timed)
        took = time.perf_counter() - began[0]  # the writer's time, commit included
        report.batches += 1
        for name, n in ((table, pruned.rows), *pruned.cascaded.items()):
            if n:
                report.pruned[name] = report.pruned.get(name, 0) + n
                if self._observer is not None:
                    self._observer.on_pruned(name, n)
        if self._observer is not None:
            self._observer.on_retention_batch(took)
        if pruned.objects:
            await self._delete_objects(pruned.objects, report)
        # Yield the writer: the writes queued meanwhile run now, and if there were any, give
        # them the writer for a while (they are ingest; pruning can wait).
        await asyncio.sleep(pause_after(took, contended=self._db.pending_writes > 0))
        return pruned

    async def _delete_objects(self, names: list[str], report: RunReport) -> None:
        """Best effort: an object not deleted now (broker away, expired already) goes with
        the outputs store's age limit, which is the results' (bus.topology)."""
        if self._outputs is None:
            report.objects_skipped += len(names)
            return
        try:
            bucket = await self._outputs()
        except Exception as exc:
            log.warning("output objects not deleted: no outputs store", error=str(exc))
            report.objects_skipped += len(names)
            return
        gate = asyncio.Semaphore(OBJECT_DELETES)

        async def one(name: str) -> bool:
            async with gate:
                try:
                    await bucket.delete(name)
                except Exception as exc:  # gone already, or the broker is away
                    log.debug("output object not deleted", name=name, error=str(exc))
                    return False
                return True

        done = sum(await asyncio.gather(*(one(n) for n in sorted(set(names)))))
        report.objects += done
        report.objects_skipped += len(set(names)) - done
        if done and self._observer is not None:
            self._observer.on_objects_deleted(done)


__all__ = ["RetentionObserver", "RetentionWorker", "RunReport", "pause_after"]
