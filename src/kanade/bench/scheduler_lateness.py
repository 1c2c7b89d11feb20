"""Fire lateness of the central scheduler (SPEC §10.1): N calendar schedules due at the
same minute, fired by a real ``kanade-backend`` against a real nats-server.

How lateness is measured: docs/performance.md, "How fire lateness is measured".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

import httpx

from kanade.bench.security import backend_args, probe_credentials, secure_broker
from kanade.bus import Bus, free_port
from kanade.bus.cluster import BrokerCluster
from kanade.bus.credentials import BusCredentials
from kanade.core import subjects
from kanade.core.instants import system_clock
from kanade.core.models.wire import Command, decode
from kanade.pgserver import EmbeddedPostgres
from kanade.security.authority import Authority

BIN = Path(sys.executable).parent
JOB = {
    "id": "bench-noop",
    "version": "1",
    "execute": {"shell": "sh", "script": "true", "timeout": "30s"},
}


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


async def create_all(url: str, n: int, at: datetime, tag: str) -> None:
    gate = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def one(i: int) -> None:
            body = {
                "id": f"bench-{tag}-{i:04d}",
                "job_id": JOB["id"],
                "tz": "utc",
                "when": {"calendar": {"at": at.strftime("%Y-%m-%d %H:%M")}},
                "target": {"pcs": [f"bench-pc-{i:04d}"]},
            }
            async with gate:
                r = await http.post("/api/schedules", json=body)
            if r.status_code not in (200, 201):
                raise SystemExit(f"create failed: {r.status_code} {r.text}")

        await asyncio.gather(*(one(i) for i in range(n)))


async def measure(
    nats_url: str | list[str], credentials: BusCredentials, url: str, n: int, runs: int
) -> dict[str, object]:
    bus = await Bus.connect(nats_url, name="bench-lateness", deadline=10, credentials=credentials)
    arrivals: dict[str, float] = {}
    nominal: dict[str, datetime] = {}

    async def on(msg) -> None:  # type: ignore[no-untyped-def]
        got = system_clock()
        cmd = decode(Command, msg.data)
        if cmd.schedule_id and cmd.nominal_time and cmd.exec_id not in arrivals:
            arrivals[cmd.exec_id] = (got - cmd.nominal_time).total_seconds()
            nominal[cmd.exec_id] = cmd.nominal_time

    await bus.nc.subscribe(subjects.COMMANDS_ALL, cb=on)
    per_run: list[list[float]] = []
    try:
        for run in range(runs):
            now = system_clock()
            # The first minute boundary that leaves time to create every schedule.
            at = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
            while (at - now).total_seconds() < 10 + n * 0.02:
                at += timedelta(minutes=1)
            t0 = time.monotonic()
            await create_all(url, n, at, f"r{run}")
            created_s = time.monotonic() - t0
            if system_clock() > at - timedelta(seconds=2):
                raise SystemExit("creating the schedules took too long; use fewer --schedules")
            print(
                f"# run {run + 1}: {n} schedules created in {created_s:.1f}s; due {at:%H:%M}Z",
                file=sys.stderr,
                flush=True,
            )
            before = len(arrivals)
            give_up = time.monotonic() + (at - system_clock()).total_seconds() + 60
            while len(arrivals) - before < n and time.monotonic() < give_up:
                await asyncio.sleep(0.2)
            lates = [v for k, v in arrivals.items() if nominal[k] == at]
            if len(lates) < n:
                raise SystemExit(f"only {len(lates)} of {n} fires arrived")
            per_run.append(lates)
    finally:
        await bus.close()
    everything = [x for r in per_run for x in r]
    p50s = [pct(r, 50) for r in per_run]
    p99s = [pct(r, 99) for r in per_run]
    return {
        "name": "scheduler_fire_lateness",
        "params": {"schedules": n, "shape": "calendar one-shot, same minute"},
        "median": round(statistics.median(p50s), 4),
        "min": round(min(p50s), 4),
        "max": round(max(p50s), 4),
        "runs": runs,
        "unit": "s",
        "fires": len(everything),
        "p50": round(pct(everything, 50), 4),
        "p99": round(pct(everything, 99), 4),
        "p99_median_of_runs": round(statistics.median(p99s), 4),
        "worst": round(max(everything), 4),
        # The scheduler prepares fires ahead of their instant and publishes at the instant:
        # a command that arrived before its nominal time would be a bug (and would flatter
        # the percentiles), so it is counted, not hidden.
        "earliest": round(min(everything), 4),
        "early_fires": sum(1 for x in everything if x < 0),
        "target_p99_s": 0.1,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--schedules", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--cluster", action="store_true",
                    help="3 brokers (R3), PostgreSQL and 2 backend replicas (SPEC §9)")
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="kanade-bench-sched-"))
    print(f"# logs in {base}", file=sys.stderr)
    with _topology(base, cluster=args.cluster) as (nats_urls, authority, db):
        replicas = 2 if args.cluster else 1
        procs, urls = [], []
        for i in range(replicas):
            port = free_port()
            log = open(base / f"backend-{i}.log", "w")  # noqa: SIM115 - closed at exit
            procs.append(subprocess.Popen(
                [str(BIN / "kanade-backend"), "run", "--nats-url", ",".join(nats_urls),
                 "--http-port", str(port), "--log-level", os.environ.get("BENCH_LOG", "warning"),
                 *backend_args(authority, base)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "KANADE_DB": db},
            ))  # fmt: skip
            urls.append(f"http://127.0.0.1:{port}")
        try:
            url = _leader(urls, procs, base)
            httpx.post(url + "/api/jobs", json=JOB, timeout=10).raise_for_status()
            line = asyncio.run(
                measure(nats_urls, probe_credentials(authority), url, args.schedules, args.runs)
            )
            params = cast(dict[str, object], line["params"])
            params["topology"] = "cluster" if args.cluster else "single"
            print(json.dumps(line), flush=True)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _leader(urls: list[str], procs: list[subprocess.Popen[bytes]], base: Path) -> str:
    """The URL of the replica that leads the scheduler (the schedules go through it)."""
    deadline = time.monotonic() + 90
    while True:
        for url in urls:
            try:
                if httpx.get(url + "/api/scheduler", timeout=2).json().get("leader"):
                    return url
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            logs = "\n".join(f.read_text()[-2000:] for f in base.glob("backend-*.log"))
            raise SystemExit(f"no scheduler leader:\n{logs}")
        time.sleep(0.1)


@contextlib.contextmanager
def _topology(base: Path, *, cluster: bool) -> Iterator[tuple[list[str], Authority, str]]:
    """(broker URLs, authority, database) of a single broker and SQLite, or of a 3-node
    cluster and a PostgreSQL database (durable settings, as a real server)."""
    broker, authority = secure_broker(base)
    if not cluster:
        broker.start(timeout=15)
        try:
            yield [broker.url], authority, str(base / "kanade.db")
        finally:
            broker.stop()
        return
    nodes = BrokerCluster(base / "cluster", security=authority.broker_security(),
                          routes=authority.route_security())  # fmt: skip
    nodes.start()
    try:
        with EmbeddedPostgres(durable=True) as pg:
            yield nodes.urls, authority, pg.create_database("lateness")
    finally:
        nodes.stop()


if __name__ == "__main__":
    main()
