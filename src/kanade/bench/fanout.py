"""Fan-out: exec a trivial job to N agents until all N results are rows in the DB (SPEC §10.1).

Per run: ``dispatch`` (POST /api/exec returned: exec row written, command published),
``published`` (all N results stored in the results stream: the agent side is done),
``total`` (all N results are SQLite rows: what the §10.2 target measures), and
``ingest`` = total - published.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

from kanade.bench.common import Stack, emit, ensure_job
from kanade.bus.connection import connect
from kanade.bus.credentials import BusCredentials
from kanade.pgserver import server_root


async def one_run(http: httpx.AsyncClient, nats_url: str, credentials: BusCredentials,
                  job: str, n: int) -> tuple[float, float, float]:
    nc = await connect(nats_url.split(","), name="bench-fanout", retry_forever=False,
                       credentials=credentials)
    # pcs with a result, per exec: results can arrive before the exec call returns its id.
    seen: dict[str, set[str]] = defaultdict(set)
    done = asyncio.Event()
    exec_id: list[str] = []

    def check() -> None:
        if exec_id and len(seen[exec_id[0]]) >= n:
            done.set()

    async def on_result(msg: object) -> None:
        data = json.loads(msg.data)  # type: ignore[attr-defined]
        seen[str(data.get("exec_id"))].add(data["pc_id"])
        check()

    # A core subscription sees each result as the stream stores it and costs no consumer.
    await nc.subscribe("kanade.result.>", cb=on_result)
    await nc.flush()
    try:
        t0 = time.perf_counter()
        resp = await http.post(f"/api/exec/{job}", json={"target": {"all": True}})
        resp.raise_for_status()
        created = resp.json()
        exec_id.append(created["exec_id"])
        check()
        t_dispatch = time.perf_counter() - t0
        if created["expected_count"] != n:
            raise SystemExit(f"expected {n} agents, the backend expects {created}")
        await asyncio.wait_for(done.wait(), 600)
        t_published = time.perf_counter() - t0
        while True:
            ex = (await http.get(f"/api/executions/{created['exec_id']}",
                                 params={"results": "false"})).json()
            if ex["finished_count"] >= n:
                break
            await asyncio.sleep(0.005)
        return t_dispatch, t_published, time.perf_counter() - t0
    finally:
        await nc.close()


async def _runs(stack: Stack, n: int, runs: int, script: str
                ) -> list[tuple[float, float, float]]:
    with httpx.Client(base_url=stack.url, timeout=60) as sync_http:
        ensure_job(sync_http, "bench-fanout", script)
    creds = stack.credentials
    async with httpx.AsyncClient(base_url=stack.url, timeout=120) as http:
        await one_run(http, stack.nats_url, creds, "bench-fanout", n)  # warm-up
        return [await one_run(http, stack.nats_url, creds, "bench-fanout", n)
                for _ in range(runs)]


def run(agents: int, exec_mode: str = "stub", runs: int = 5, cluster: bool = False) -> None:
    params: dict[str, object] = {"agents": agents, "exec": exec_mode,
                                 "topology": "cluster" if cluster else "single"}
    with tempfile.TemporaryDirectory(prefix="kanade-bench-") as tmp:
        stack = Stack(Path(tmp), cluster=cluster)
        try:
            stack.swarm(agents, exec_mode)
            samples = asyncio.run(_runs(stack, agents, runs, "echo ok"))
        finally:
            stack.stop()
            if cluster:  # a root's PostgreSQL lives outside the data dir (server_root)
                shutil.rmtree(server_root(Path(tmp) / "data"), ignore_errors=True)
    emit("fanout.dispatch", params, [s[0] for s in samples])
    emit("fanout.published", params, [s[1] for s in samples])
    emit("fanout.ingest", params, [s[2] - s[1] for s in samples])
    emit("fanout.total", params, [s[2] for s in samples])
