"""What the notification detector costs the database (docs/notifications.md, "Cost").

A migrated SQLite file with a fleet's worth of rows — 10 000 agents heartbeating,
100 000 executions (1 % of them failed), two webhooks (two offline thresholds) — then the
detector's passes are timed: an idle pass (nothing new since the last one, the 5-minute
overlap read again), and a pass that finds 500 new failed execs and fans them out.

Usage: python benchmarks/notify_scan.py [--agents 10000] [--execs 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from kanade.backend.store import agents, webhooks
from kanade.backend.store.database import Database, database_url
from kanade.backend.store.migrate import upgrade_sync
from kanade.backend.store.tables import executions
from kanade.backend.workers.notify.detector import NotifyDetector


def _exec_rows(n: int, start: int, now: datetime, failed_every: int) -> list[dict[str, object]]:
    """Execs ``start`` … ``start + n``, completed over the 20 minutes before ``now``."""
    return [
        {
            "exec_id": f"e{i:08d}", "kind": "job", "job_id": "j", "version": "1",
            "target": {"all": True}, "expected_pcs": [], "expected_count": 10,
            "status": "completed", "initiated_by": "bench", "schedule_id": None,
            "nominal_time": None, "created_at": now - timedelta(hours=1),
            "updated_at": now - timedelta(seconds=1200 - (i % 100_000) * 0.006),
            "started_count": 10, "finished_count": 10,
            "failed_count": 1 if i % failed_every == 0 else 0, "skipped_count": 0,
            "no_result_count": 0, "request_id": f"r{i}", "created_status": "pending",
        }
        for i in range(start, start + n)
    ]  # fmt: skip


async def main(n_agents: int, n_execs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url(str(Path(tmp) / "bench.db"))
        upgrade_sync(url)
        db = Database(url)
        now = datetime.now(UTC)
        base = now - timedelta(hours=2)

        def seed(conn) -> None:  # type: ignore[no-untyped-def]
            for i in range(0, n_execs, 5000):
                conn.execute(insert(executions), _exec_rows(min(5000, n_execs - i), i, now, 100))
            agents.upsert_agents(conn, [
                {"pc_id": f"pc-{i:05d}", "hostname": "h", "groups": [], "last_seen": now,
                 "first_seen": base} for i in range(n_agents)
            ])  # fmt: skip
            for wid, offline in (("ops", 600.0), ("pager", 3600.0)):
                webhooks.add_webhook(conn, {
                    "webhook_id": wid, "kind": "generic", "url": "http://127.0.0.1:9/h",
                    "secret": None, "events": ["exec.failed", "agent.offline",
                                               "schedule.skipped", "rollout.halted"],
                    "enabled": True, "offline_after_s": offline, "created_at": base,
                    "created_by": "bench", "updated_at": base, "updated_by": "bench",
                })  # fmt: skip

        await db.write(seed)
        clock = [now]
        detector = NotifyDetector(db, leading=lambda: True, clock=lambda: clock[0])
        while await detector.step():  # the first passes read the lookback hour
            pass
        idle = []
        for _ in range(20):
            clock[0] += timedelta(seconds=5)
            t0 = time.perf_counter()
            await detector.step()
            idle.append((time.perf_counter() - t0) * 1000)
        fresh = clock[0] + timedelta(seconds=1)

        def new_failures(conn) -> None:  # type: ignore[no-untyped-def]
            rows = _exec_rows(500, n_execs, fresh, 1)
            for r in rows:
                r["updated_at"] = fresh
            conn.execute(insert(executions), rows)

        await db.write(new_failures)
        clock[0] = fresh + timedelta(seconds=1)
        t0 = time.perf_counter()
        while await detector.step():
            pass
        busy = (time.perf_counter() - t0) * 1000
        db.close()
        print(json.dumps({
            "bench": "notify_scan", "agents": n_agents, "execs": n_execs,
            "idle_pass_ms_median": round(statistics.median(idle), 2),
            "idle_pass_ms_max": round(max(idle), 2),
            "pass_500_new_failures_ms": round(busy, 1),
        }))  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--execs", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(main(args.agents, args.execs))
    sys.exit(0)
