"""Round-trip latency of `kanade run`, start-up time of `kanade up`, and broker cost per agent.

Starts a real `kanade up --agents N` (broker, backend and N agent processes on
loopback), then measures, as medians over several runs:

* ``up.ready``: from launching `kanade up` until it reports ready;
* ``up.first_run``: from launching `kanade up` until the first `kanade run --all` succeeded;
* ``run.api``: POST /api/run to all N agents until every result is a row in the DB
  (polled through GET /api/executions/{id});
* ``run.cli``: the whole `kanade run --all --json -- 'echo hi'` process, start-up included;
* ``broker.consumers``: JetStream consumers on the broker in steady state, and per agent.

Each measurement is printed as one JSON line (SPEC §10):
``{"name", "params", "median", "min", "max", "runs", "unit"}``.

Usage: python benchmarks/run_latency.py [--agents 3] [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from kanade.bus.broker import free_port
from kanade.bus.connection import connect

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def emit(name: str, params: dict[str, object], samples: list[float], unit: str = "s") -> None:
    print(json.dumps({
        "name": name,
        "params": params,
        "median": round(statistics.median(samples), 4),
        "min": round(min(samples), 4),
        "max": round(max(samples), 4),
        "runs": len(samples),
        "unit": unit,
    }), flush=True)


class Up:
    def __init__(self, agents: int, data_dir: Path) -> None:
        self.http_port, self.nats_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.nats_url = f"nats://127.0.0.1:{self.nats_port}"
        self.log = data_dir / "up.log"
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [str(BIN / "kanade"), "up", "--agents", str(agents), "--http-port",
             str(self.http_port), "--nats-port", str(self.nats_port), "--data-dir",
             str(data_dir / "data"), "--examples", str(REPO / "examples" / "jobs")],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
        deadline = time.monotonic() + 120
        while "kanade is up" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"kanade up failed:\n{self.log.read_text()}")
            time.sleep(0.02)
        self.ready_s = time.monotonic() - self.t0

    def cli_run(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "kanade"), "run", "--all", "--json", "--", "echo hi"],
            capture_output=True, text=True, env={**os.environ, "KANADE_URL": self.url},
            timeout=120, check=False)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def api_run(http: httpx.Client, expected: int) -> float:
    t0 = time.perf_counter()
    created = http.post("/api/run", json={"script": "echo hi", "target": {"all": True}}).json()
    assert created["expected_count"] == expected, created
    while True:
        ex = http.get(f"/api/executions/{created['exec_id']}").json()
        if ex["finished_count"] >= expected:
            elapsed = time.perf_counter() - t0
            assert all(r.get("exit_code") == 0 for r in ex["results"]), ex
            return elapsed
        time.sleep(0.002)


async def count_consumers(nats_url: str) -> dict[str, int]:
    nc = await connect(nats_url, name="bench-consumers", retry_forever=False)
    try:
        js = nc.jetstream()
        counts: dict[str, int] = {}
        for info in await js.streams_info():
            counts[info.config.name] = info.state.consumer_count
        return counts
    finally:
        await nc.close()


async def steady_consumers(nats_url: str, ready_at: float, settle_s: float = 5.0) -> dict[str, int]:
    """Consumers once the agents' short-lived KV snapshot consumers (2 s inactivity
    threshold) have expired: counted ``settle_s`` after the stack was ready."""
    remaining = ready_at + settle_s - time.monotonic()
    if remaining > 0:
        await asyncio.sleep(remaining)
    return await count_consumers(nats_url)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--starts", type=int, default=3, help="how many times to start kanade up")
    args = ap.parse_args()
    params = {"agents": args.agents}

    ready, first_run = [], []
    for _ in range(args.starts):
        with tempfile.TemporaryDirectory() as tmp:
            up = Up(args.agents, Path(tmp))
            try:
                res = up.cli_run()
                assert res.returncode == 0, res.stderr
                first_run.append(time.monotonic() - up.t0)
                ready.append(up.ready_s)
            finally:
                up.stop()
    emit("up.ready", params, ready)
    emit("up.first_run", params, first_run)

    with tempfile.TemporaryDirectory() as tmp:
        up = Up(args.agents, Path(tmp))
        try:
            with httpx.Client(base_url=up.url, timeout=30) as http:
                api_run(http, args.agents)  # warm-up
                emit("run.api", params, [api_run(http, args.agents) for _ in range(args.runs)])
            cli = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                res = up.cli_run()
                cli.append(time.perf_counter() - t0)
                assert res.returncode == 0 and res.stdout.count("\n") == args.agents, res
            emit("run.cli", params, cli)
            counts = asyncio.run(steady_consumers(up.nats_url, up.t0 + up.ready_s))
            agent_consumers = counts.get("KANADE_COMMANDS", 0)
            print(json.dumps({
                "name": "broker.consumers", "params": params, "per_stream": counts,
                "total": sum(counts.values()),
                "per_agent": round(agent_consumers / max(1, args.agents), 3),
            }), flush=True)
        finally:
            up.stop()


if __name__ == "__main__":
    main()
