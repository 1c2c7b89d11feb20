"""`kanade run --all` round trip to N real agent processes, through the CLI and the HTTP API.

Also: `kanade up` start-up (launch → ready, launch → first successful run) and
the broker's JetStream consumers per connected agent in steady state.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from kanade.bench.common import BIN, Stack, emit
from kanade.bus.connection import connect
from kanade.bus.credentials import BusCredentials


def api_round_trip(http: httpx.Client, expected: int) -> float:
    """POST the run, then wait for every result the way an API client should: a long poll
    answered as each result is stored (``done_above``), not a tight polling loop that
    takes the CPU the backend needs to store them."""
    t0 = time.perf_counter()
    created = http.post("/api/run", json={"script": "echo hi", "target": {"all": True}}).json()
    if created.get("expected_count") != expected:
        raise SystemExit(f"expected {expected} agents: {created}")
    done = 0
    while True:
        params: dict[str, str | int] = {"results": "false", "done_above": done, "wait": 10}
        ex = http.get(f"/api/executions/{created['exec_id']}", params=params).json()
        done = ex["finished_count"]
        if done >= expected:
            return time.perf_counter() - t0


def cli_round_trip(url: str, expected: int) -> float:
    t0 = time.perf_counter()
    res = subprocess.run([str(BIN / "kanade"), "run", "--all", "--json", "--", "echo hi"],
                         capture_output=True, text=True, env={**os.environ, "KANADE_URL": url},
                         timeout=300, check=False)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0 or res.stdout.count("\n") != expected:
        raise SystemExit(f"kanade run failed: {res.stderr or res.stdout}")
    return elapsed


async def consumers(nats_url: str, credentials: BusCredentials) -> dict[str, int]:
    nc = await connect(nats_url.split(","), name="bench-consumers", retry_forever=False,
                       credentials=credentials)
    try:
        infos = await nc.jetstream().streams_info()
        return {str(i.config.name): i.state.consumer_count for i in infos}
    finally:
        await nc.close()


def run(agents: list[int], runs: int = 10, starts: int = 3, cluster: bool = False) -> None:
    for n in agents:
        params: dict[str, object] = {"agents": n, "topology": "cluster" if cluster else "single"}
        ready, first = [], []
        for _ in range(starts):
            with tempfile.TemporaryDirectory(prefix="kanade-bench-") as tmp:
                stack = Stack(Path(tmp), agents=n, cluster=cluster)
                try:
                    cli_round_trip(stack.url, n)
                    first.append(time.monotonic() - stack.t0)
                    ready.append(stack.ready_s)
                finally:
                    stack.stop()
        emit("up.ready", params, ready)
        emit("up.first_run", params, first)
        with tempfile.TemporaryDirectory(prefix="kanade-bench-") as tmp:
            stack = Stack(Path(tmp), agents=n, cluster=cluster)
            try:
                with httpx.Client(base_url=stack.url, timeout=60) as http:
                    api_round_trip(http, n)  # warm-up
                    emit("run.api", params, [api_round_trip(http, n) for _ in range(runs)])
                emit("run.cli", params, [cli_round_trip(stack.url, n) for _ in range(runs)])
                # The agents' KV snapshot consumers expire 2 s after use: count after that.
                remaining = stack.t0 + stack.ready_s + 5 - time.monotonic()
                if remaining > 0:
                    time.sleep(remaining)
                counts = asyncio.run(consumers(stack.nats_url, stack.credentials))
                print(json.dumps({
                    "name": "broker.consumers", "params": params,
                    "per_agent": round(counts.get("KANADE_COMMANDS", 0) / max(1, n), 3),
                    "total": sum(counts.values()),
                    "per_stream": {k: v for k, v in counts.items() if v},
                }), flush=True)
            finally:
                stack.stop()
