"""A schedule with ``rollout`` (SPEC §2.2, §4.7): the central scheduler's fire becomes a
durable rollout (same runner, same tables) instead of one publish to the whole target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from agent_harness import eventually
from rollout_stack import Stack, alive, job

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores


def cron_at(moment: datetime) -> str:
    t = moment.astimezone(UTC)
    return f"{t.second} {t.minute} {t.hour} {t.day} {t.month} *"


async def test_a_scheduled_fire_rolls_out_in_waves(stack: Stack) -> None:
    b = stack.backend()
    stack.swarm(4, prefix="sc-")
    await eventually(lambda: alive(b, 4, "sc-"), what="4 agents alive")
    assert b.post("/api/jobs", job("hello", "echo hi")).status_code == 201
    await eventually(lambda: b.get("/api/scheduler").get("leader"), what="scheduler leads")
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    schedule = {
        "id": "waved",
        "job_id": "hello",
        "when": {"cron": cron_at(at)},
        "target": {"all": True},
        "tz": "utc",
        "rollout": {
            "waves": [{"percent": 50}, {"percent": 100, "delay": "1s"}],
            "halt_on_failure_rate": 0.5,
        },
    }
    r = b.post("/api/schedules", schedule)
    assert r.status_code == 201, r.text

    def rollout() -> dict | None:
        items = b.get("/api/rollouts", status="completed")["items"]
        return items[0] if items else None

    r = await eventually(rollout, timeout=30, what="scheduled rollout completed")
    assert r["created_by"] == "schedule:waved"
    assert [w["size"] for w in r["waves"]] == [2, 2]
    gap = datetime.fromisoformat(r["waves"][1]["dispatched_at"]) - datetime.fromisoformat(
        r["waves"][0]["settled_at"]
    )
    assert gap >= timedelta(seconds=1)
    ex = b.get(f"/api/executions/{r['exec_id']}", results="false")
    assert ex["schedule_id"] == "waved"
    await eventually(
        lambda: b.get(f"/api/executions/{r['exec_id']}", results="false")["status"] == "completed",
        what="exec completed",
    )
