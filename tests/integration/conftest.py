"""Fixtures shared by the integration tests: an in-process backend; real agent processes
and a results collector reading the results stream (see agent_harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from agent_harness import AgentFleet, ResultsCollector
from rollout_stack import Stack

from kanade.backend.inprocess import InProcessBackend, in_process_backend
from kanade.backend.settings import Settings
from kanade.bus.connection import Bus


@pytest.fixture
async def backend(nats_url: str, tmp_path: Path) -> AsyncIterator[InProcessBackend]:
    """The whole backend in this process on the session broker and a fresh SQLite file
    (heartbeats flushed every 50 ms); a test module needing other settings overrides it."""
    settings = Settings.from_db_arg(
        nats_url=nats_url, db=str(tmp_path / "kanade.db"), heartbeat_flush_s=0.05
    )
    async with in_process_backend(settings) as b:
        yield b


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Broker + backend processes under tmp_path (rollout_stack.Stack), closed afterwards."""
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
async def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AgentFleet]:
    """Agents started under tmp_path, on the test's ``stack`` broker if it uses one, else on
    ``nats_url``; they and every script they started die afterwards."""
    if "stack" in request.fixturenames:
        url = request.getfixturevalue("stack").broker.url
    else:
        url = request.getfixturevalue("nats_url")
    f = AgentFleet(tmp_path / "agents", url)
    try:
        yield f
    finally:
        try:
            await f.aclose()
        finally:
            f.close()


@pytest.fixture
async def collector(bus: Bus) -> AsyncIterator[ResultsCollector]:
    c = await ResultsCollector(bus.nc).start()
    try:
        yield c
    finally:
        await c.close()
