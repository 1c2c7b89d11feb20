"""psycopg 3 vs asyncpg on the projector's database path (issue #16: measure both, pick one).

The backend writes each projected batch as one unit of work: EventStarted rows inserted,
result rows upserted, the exec's counters recounted, one commit
(``backend/workers/projection/results.py``). This script runs exactly those store functions
on a throwaway PostgreSQL server (kanade.pgserver, durable settings) two ways:

* ``psycopg``: what the backend does — a sync engine, the unit of work on ONE writer
  thread (``backend/store/database.py``);
* ``asyncpg``: SQLAlchemy's async engine, the same unit of work through
  ``AsyncConnection.run_sync`` on the event loop (greenlet-bridged);

in alternating order, a fresh database per run, and prints one JSON line per driver:
results/s, and the worst event-loop stall seen while the batches were written (what the API
would feel). asyncpg is not a dependency of kanade: ``pip install asyncpg`` to run this.

    python benchmarks/pg_drivers.py --results 20000 --batch 1000 --rounds 5

The end-to-end comparison (``kanade bench ingest --store postgresql`` with the backend on
each driver) and the decision are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection, make_url

from kanade.backend.store import executions, results
from kanade.backend.store.database import create_engine
from kanade.backend.store.migrate import upgrade_sync
from kanade.pgserver import EmbeddedPostgres

NOW = datetime.now(UTC)
Work = Callable[[Connection], None]


def result_rows(start: int, n: int, state: str) -> list[dict[str, Any]]:
    finished = state == "finished"
    return [
        {
            "result_id": f"r{i:08d}", "exec_id": "e1", "request_id": "q", "pc_id": f"pc{i}",
            "job_id": "j", "version": "1", "state": state, "exit_code": 0 if finished else None,
            "skipped": False, "stdout": "ok\n", "stderr": "", "stdout_bytes": 3,
            "stderr_bytes": 0, "stdout_ref": None, "stderr_ref": None, "started_at": NOW,
            "finished_at": NOW if finished else None, "attempts": 1, "note": None,
            "schedule_id": None, "nominal_time": None, "recorded_at": NOW, "timeout_s": 60.0,
            "expires_at": None,
        }
        for i in range(start, start + n)
    ]  # fmt: skip


def exec_row(expected: int) -> dict[str, Any]:
    return {
        "exec_id": "e1", "kind": "job", "job_id": "j", "version": "1", "target": {},
        "expected_pcs": [], "expected_count": expected, "status": "pending",
        "initiated_by": "bench", "schedule_id": None, "nominal_time": None,
        "created_at": NOW, "request_id": "q",
    }  # fmt: skip


def batch_work(started: list[dict[str, Any]], finished: list[dict[str, Any]]) -> Work:
    def work(conn: Connection) -> None:
        results.insert_started(conn, started)
        results.upsert_finished(conn, finished)
        executions.refresh_exec_counters(conn, {"e1"}, NOW)

    return work


async def watch_loop(stop: asyncio.Event) -> float:
    """The worst extra delay of a 5 ms sleep while the batches are written."""
    worst = 0.0
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.005)
        worst = max(worst, time.perf_counter() - t - 0.005)
    return worst


async def with_psycopg(url: str, works: list[Work], setup: Work) -> float:
    engine = create_engine(url)
    writer = ThreadPoolExecutor(max_workers=1)

    def in_tx(work: Work) -> None:
        with engine.begin() as conn:
            work(conn)

    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(writer, in_tx, setup)
        for work in works:
            await loop.run_in_executor(writer, in_tx, work)
    finally:
        writer.shutdown()
        engine.dispose()
    return 0.0


async def with_asyncpg(url: str, works: list[Work], setup: Work) -> float:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(make_url(url).set(drivername="postgresql+asyncpg"))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(setup)
        for work in works:
            async with engine.begin() as conn:
                await conn.run_sync(work)
    finally:
        await engine.dispose()
    return 0.0


DRIVERS = {"psycopg": with_psycopg, "asyncpg": with_asyncpg}


async def one_run(driver: str, url: str, n: int, batch: int) -> tuple[float, float]:
    works = [
        batch_work(result_rows(s, batch, "in_flight"), result_rows(s, batch, "finished"))
        for s in range(0, n, batch)
    ]

    def setup(conn: Connection) -> None:
        executions.upsert_executions(conn, [exec_row(n)], NOW)

    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_loop(stop))
    t0 = time.perf_counter()
    await DRIVERS[driver](url, works, setup)
    elapsed = time.perf_counter() - t0
    stop.set()
    return n / elapsed, await watcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {d: [] for d in DRIVERS}
    stalls: dict[str, list[float]] = {d: [] for d in DRIVERS}
    order = list(DRIVERS)
    with EmbeddedPostgres(durable=True) as pg:
        for rnd in range(args.rounds):
            for driver in order if rnd % 2 == 0 else order[::-1]:
                url = pg.create_database(f"drivers_{rnd}_{driver}")
                upgrade_sync(url)
                rate, stall = asyncio.run(one_run(driver, url, args.results, args.batch))
                rates[driver].append(rate)
                stalls[driver].append(stall)
    for driver in DRIVERS:
        line = {
            "name": "ingest.db_path",
            "params": {"driver": driver, "results": args.results, "batch": args.batch,
                       "store": "postgresql"},
            "median": round(statistics.median(rates[driver]), 1),
            "min": round(min(rates[driver]), 1),
            "max": round(max(rates[driver]), 1),
            "runs": len(rates[driver]),
            "unit": "results/s",
            "loop_stall_ms_median": round(statistics.median(stalls[driver]) * 1000, 1),
        }  # fmt: skip
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
