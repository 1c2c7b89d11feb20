"""Agent-side schedule decisions are visible (SPEC §3.6, §4.4; issue #14 item 7): a real
``kanade-agent`` fires a ``runs_on: agent`` schedule, skips its occurrences while the fleet is
frozen, and misses the ones that came due while it was down; the backend's API, ``/metrics``
and the decisions list show all three, as they show the central scheduler's."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from agent_harness import AgentFleet, eventually, wait_agent_ready

from kanade.backend.inprocess import InProcessBackend
from kanade.bus import Bus

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

EVERY_SECOND = "* * * * * *"  # 6 fields: seconds first
DOWN_S = 3.5  # several occurrences come due while the agent is down
JOB = {
    "id": "tick",
    "version": "1",
    "execute": {"shell": "sh", "script": "echo tick", "timeout": "30s"},
}
SCHEDULE = {
    "id": "local-tick",
    "job_id": "tick",
    "when": {"cron": EVERY_SECOND},
    "target": {"pcs": ["pc-1"]},
    "runs_on": "agent",
    "tz": "utc",
}


async def _status(backend: InProcessBackend) -> dict[str, Any]:
    r = await backend.client.get("/api/schedules/local-tick", params={"decisions": 200})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _metric(text: str, runs_on: str, result: str) -> float:
    m = re.search(
        rf'^kanade_schedule_decisions\{{result="{result}",runs_on="{runs_on}"\}} (\S+)$',
        text,
        re.M,
    )
    return float(m.group(1)) if m else -1.0


async def test_fired_frozen_and_missed_agent_decisions_are_counted(
    backend: InProcessBackend, bus: Bus, fleet: AgentFleet
) -> None:
    c = backend.client
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    assert (await c.post("/api/jobs", json=JOB)).status_code == 201
    assert (await c.post("/api/schedules", json=SCHEDULE)).status_code == 201

    async def counted(key: str, n: int) -> dict[str, Any] | None:
        s = await _status(backend)
        return s if s["status"][key] >= n else None

    # 1. fires: the agent's own decisions reach the schedule's counters
    await eventually(lambda: counted("fired_count", 2), what="agent fires counted",
                     diagnostics=agent.log_tail)  # fmt: skip

    # 2. frozen: occurrences skipped on the agent, with the reason
    assert (await c.put("/api/freeze", json={"reason": "test"})).status_code == 200
    s = await eventually(lambda: counted("skipped_count", 2), what="frozen fires counted",
                         diagnostics=agent.log_tail)  # fmt: skip
    assert (await c.delete("/api/freeze")).status_code == 200
    frozen = [d for d in s["decisions"] if d["result"] == "skipped"]
    assert frozen and all(d["reason"] == "frozen" and d["pc_id"] == "pc-1" for d in frozen)

    # 3. missed: the agent is down across several occurrences
    await agent.stop()
    stopped = time.monotonic()
    await eventually(lambda: time.monotonic() - stopped >= DOWN_S, what="down for a while")
    agent.start()
    s = await eventually(lambda: counted("missed_count", 1), what="missed fires counted",
                         diagnostics=agent.log_tail)  # fmt: skip
    missed = [d for d in s["decisions"] if d["result"] == "missed"]
    assert missed and missed[0]["reason"] == "catchup_once" and missed[0]["pc_id"] == "pc-1"
    status = s["status"]
    assert status["last_fire"] is not None and status["runs_on"] == "agent"

    # /metrics shows the agent's counters next to the central scheduler's
    async def scraped() -> str | None:
        text = (await c.get("/metrics")).text
        ok = all(
            _metric(text, "agent", k) >= status[f"{k}_count"] for k in ("fired", "skipped")
        ) and _metric(text, "agent", "missed") >= 1
        return text if ok else None

    text = await eventually(scraped, what="agent decisions in /metrics")
    assert _metric(text, "backend", "fired") == 0.0  # nothing fired centrally
