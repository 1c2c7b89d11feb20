"""Budgets end to end (SPEC §4.9): backend caps → command → real agent → result note.

A job asking for more time than ``--max-timeout`` is capped, and an output over
``--max-output-bytes`` is cut inline; both caps are stated in the result's note,
which is what the operator reads when a run "stopped early" or "lost output".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from agent_harness import AgentFleet, eventually, wait_agent_ready

from kanade.backend.inprocess import InProcessBackend, in_process_backend
from kanade.backend.settings import Settings
from kanade.bus import Bus
from secured import authority_dir

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

OUTPUT_CAP = 64


@pytest.fixture
async def backend(nats_url: str, store_url: str) -> AsyncIterator[InProcessBackend]:
    settings = Settings.from_db_arg(
        authority_dir=authority_dir(),
        nats_url=nats_url,
        db=store_url,
        heartbeat_flush_s=0.05,
        max_timeout_s=20.0,
        max_output_bytes=OUTPUT_CAP,
    )
    async with in_process_backend(settings) as b:
        yield b


async def test_caps_are_applied_and_stated_in_the_result(
    backend: InProcessBackend, fleet: AgentFleet, bus: Bus
) -> None:
    agent = fleet.add("budget-1", heartbeat_interval=0.5)
    await wait_agent_ready(bus.nc, agent)
    job = {
        "id": "chatty",
        "version": "1",
        "execute": {"shell": "sh", "script": "printf 'x%.0s' $(seq 1 500)", "timeout": "1h"},
    }
    assert (await backend.client.post("/api/jobs", json=job)).status_code == 201
    # force: ready on the broker, its first heartbeat may not be projected yet
    r = await backend.client.post(
        "/api/exec/chatty?force=true", json={"target": {"pcs": ["budget-1"]}}
    )
    assert r.status_code == 201, r.text
    exec_id = r.json()["exec_id"]

    async def finished() -> dict[str, Any] | None:
        rows = (await backend.client.get("/api/results", params={"exec_id": exec_id})).json()
        done = [x for x in rows["items"] if x["state"] == "finished"]
        return done[0] if done else None

    row = await eventually(finished, what="result projected", diagnostics=fleet.diagnostics)
    assert row["exit_code"] == 0
    assert row["stdout"] == "x" * OUTPUT_CAP and row["stdout_bytes"] == 500
    note = row["note"] or ""
    assert "timeout capped to 20s by server budget (job asked 3600s)" in note
    assert f"stdout truncated inline at {OUTPUT_CAP} of 500 bytes" in note
