"""Throughput: 50 jobs back to back, and 50 at once, to N real agents running real scripts."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from kanade.bench.common import Stack, emit, ensure_job


async def _exec_and_wait(http: httpx.AsyncClient, job: str, n: int) -> None:
    created = (await http.post(f"/api/exec/{job}", json={"target": {"all": True}})).json()
    if created.get("expected_count") != n:
        raise SystemExit(f"expected {n} agents: {created}")
    while True:
        ex = (await http.get(f"/api/executions/{created['exec_id']}",
                             params={"results": "false"})).json()
        if ex["finished_count"] >= n:
            return
        await asyncio.sleep(0.01)


async def _measure(url: str, agents: int, jobs: int) -> tuple[float, float]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        await _exec_and_wait(http, "bench-tp-0", agents)  # warm-up
        t0 = time.perf_counter()
        for i in range(jobs):
            await _exec_and_wait(http, f"bench-tp-{i}", agents)
        sequential = time.perf_counter() - t0
        t0 = time.perf_counter()
        await asyncio.gather(*(_exec_and_wait(http, f"bench-tp-{i}", agents)
                               for i in range(jobs)))
        concurrent = time.perf_counter() - t0
    return sequential, concurrent


def run(agents: int = 25, jobs: int = 50) -> None:
    with tempfile.TemporaryDirectory(prefix="kanade-bench-") as tmp:
        stack = Stack(Path(tmp), agents=agents)
        try:
            # Distinct jobs, so "at once" is 50 independent queues, not 50 versions
            # of one job superseding each other.
            with httpx.Client(base_url=stack.url, timeout=60) as http:
                for i in range(jobs):
                    ensure_job(http, f"bench-tp-{i}", "echo $HOSTNAME $$")
            seq, conc = asyncio.run(_measure(stack.url, agents, jobs))
        finally:
            stack.stop()
    params = {"agents": agents, "jobs": jobs, "exec": "real"}
    for label, secs in (("sequential", seq), ("concurrent", conc)):
        emit(f"throughput.{label}.jobs_per_s", params, [jobs / secs], unit="jobs/s")
        emit(f"throughput.{label}.results_per_s", params, [jobs * agents / secs],
             unit="results/s", seconds=round(secs, 3))
