"""Local concurrency (SPEC §3.4) end to end: a real agent with ``--max-local-concurrent 2``,
a real backend, five one-second jobs and one urgent job.

* never more than two of the five run at once (measured from the results' started_at /
  finished_at), and all five finish;
* the queue shows in ``GET /api/agents`` (``queue_length``) while commands wait;
* an ``urgent`` exec (admin; auth disabled means admin) starts at once, past the queue,
  while two others are running.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from agent_harness import AgentFleet, eventually
from rollout_stack import Stack, alive, job

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

PC = "lc-0"
SLOW = [f"slow-{i}" for i in range(5)]


def interval(r: dict[str, Any]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["finished_at"])


def max_overlap(spans: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant (an end before a start at the same time)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


async def test_two_at_a_time_and_urgent_bypasses_the_queue(stack: Stack, fleet: AgentFleet) -> None:
    b = stack.backend()
    fleet.add(PC, heartbeat_interval=0.3, extra_args=["--max-local-concurrent", "2"])
    await eventually(lambda: alive(b, 1, PC), what="agent alive")
    for name in SLOW:
        assert b.post("/api/jobs", job(name, "sleep 3")).status_code == 201
    assert b.post("/api/jobs", job("quick", "echo urgent")).status_code == 201

    target = {"target": {"pcs": [PC]}}
    slow_execs = [b.post_ok(f"/api/exec/{name}", target)["exec_id"] for name in SLOW]

    def queued() -> int:
        agents = b.get("/api/agents", limit=10)["items"]
        return next(a["queue_length"] for a in agents if a["pc_id"] == PC)

    # Right behind them: two run, three wait in the agent's FIFO queue.
    urgent = b.post_ok("/api/exec/quick", {**target, "urgent": True})["exec_id"]
    await eventually(lambda: queued() >= 1, timeout=10, what="queue_length reported")

    def result(exec_id: str) -> dict[str, Any] | None:
        items = b.get("/api/results", exec_id=exec_id)["items"]
        done = [r for r in items if r["state"] == "finished"]
        return done[0] if done else None

    slow = [await eventually(lambda e=e: result(e), what=f"{e} finished") for e in slow_execs]
    fast = await eventually(lambda: result(urgent), what="urgent finished")
    assert all(r["exit_code"] == 0 for r in [*slow, fast])

    spans = [interval(r) for r in slow]
    assert max_overlap(spans) == 2  # the cap held, and it was used
    starts = sorted(s for s, _ in spans)
    # Urgent started at once: before the queue's third command, with two running.
    fast_start, _ = interval(fast)
    assert fast_start < starts[2]
    assert max_overlap([*spans, interval(fast)]) == 3
    await eventually(lambda: queued() == 0, what="queue drained")
