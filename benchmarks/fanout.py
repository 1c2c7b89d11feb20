"""Fan-out: exec a trivial job to N agents and wait until all N results are rows in the DB.

Starts a broker + backend (`kanade up --agents 0`) and a swarm of N simulated
identities (`kanade-agent swarm`, same intake/ledger/outbox code as a real agent,
script step stubbed unless --exec real), then per run:

* ``dispatch``: POST /api/exec returned (exec row written, command published);
* ``published``: all N results are in the JetStream results stream (agent side done);
* ``total``: all N results are rows in SQLite (what the SPEC target measures).

Prints one JSON line per measurement: name, params, median, min, max, runs.
Usage: python benchmarks/fanout.py --agents 1000 [--exec stub|real] [--runs 5]
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


def emit(name: str, params: dict[str, object], samples: list[float]) -> None:
    print(json.dumps({"name": name, "params": params,
                      "median": round(statistics.median(samples), 4),
                      "min": round(min(samples), 4), "max": round(max(samples), 4),
                      "runs": len(samples), "unit": "s"}), flush=True)


def wait_for_line(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{path.name}: {text!r} not seen:\n{path.read_text()[-3000:]}")
        time.sleep(0.05)


async def one_run(http: httpx.AsyncClient, nats_url: str, n: int) -> tuple[float, float, float]:
    nc = await connect(nats_url, name="bench-fanout", retry_forever=False)
    seen: set[str] = set()
    all_published = asyncio.Event()
    exec_id: list[str] = []

    async def on_result(msg: object) -> None:
        data = json.loads(msg.data)  # type: ignore[attr-defined]
        if exec_id and data.get("exec_id") == exec_id[0]:
            seen.add(data["pc_id"])
            if len(seen) >= n:
                all_published.set()

    # Core subscription: sees every result as the stream stores it, costs no consumer.
    await nc.subscribe("kanade.result.>", cb=on_result)
    await nc.flush()
    t0 = time.perf_counter()
    resp = await http.post("/api/exec/bench-noop", json={"target": {"all": True}})
    resp.raise_for_status()
    created = resp.json()
    exec_id.append(created["exec_id"])
    t_dispatch = time.perf_counter() - t0
    assert created["expected_count"] == n, created
    await asyncio.wait_for(all_published.wait(), 300)
    t_published = time.perf_counter() - t0
    while True:
        ex = (await http.get(f"/api/executions/{created['exec_id']}",
                             params={"results": "false"})).json()
        if ex["finished_count"] >= n:
            break
        await asyncio.sleep(0.005)
    t_total = time.perf_counter() - t0
    await nc.close()
    return t_dispatch, t_published, t_total


async def run_bench(url: str, nats_url: str, n: int, runs: int) -> list[tuple[float, float, float]]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        job = {"id": "bench-noop", "version": "1",
               "execute": {"shell": "sh", "script": "true", "timeout": "30s"}}
        (await http.post("/api/jobs", json=job)).raise_for_status()
        await one_run(http, nats_url, n)  # warm-up
        return [await one_run(http, nats_url, n) for _ in range(runs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--exec", dest="exec_mode", choices=["stub", "real"], default="stub")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    params = {"agents": args.agents, "exec": args.exec_mode}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        http_port, nats_port = free_port(), free_port()
        url, nats_url = f"http://127.0.0.1:{http_port}", f"nats://127.0.0.1:{nats_port}"
        up_log, swarm_log = tmp / "up.log", tmp / "swarm.log"
        up = subprocess.Popen(
            [str(BIN / "kanade"), "up", "--agents", "0", "--http-port", str(http_port),
             "--nats-port", str(nats_port), "--data-dir", str(tmp / "data")],
            stdout=open(up_log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        swarm = None
        try:
            wait_for_line(up_log, "kanade is up", up, 120)
            swarm = subprocess.Popen(
                [str(BIN / "kanade-agent"), "swarm", "--agents", str(args.agents),
                 "--nats-url", nats_url, "--data-dir", str(tmp / "swarm"),
                 "--exec", args.exec_mode],
                stdout=open(swarm_log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
            wait_for_line(swarm_log, "swarm ready", swarm, 600)
            deadline = time.monotonic() + 120
            while True:
                agents = httpx.get(f"{url}/api/agents", params={"status": "alive", "limit": 1}
                                   ).json()["total"]
                if agents >= args.agents or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            samples = asyncio.run(run_bench(url, nats_url, args.agents, args.runs))
            emit("fanout.dispatch", params, [s[0] for s in samples])
            emit("fanout.published", params, [s[1] for s in samples])
            emit("fanout.total", params, [s[2] for s in samples])
        finally:
            for p in (swarm, up):
                if p is not None and p.poll() is None:
                    p.send_signal(signal.SIGINT)
                    try:
                        p.wait(120)
                    except subprocess.TimeoutExpired:
                        p.kill()


if __name__ == "__main__":
    main()
