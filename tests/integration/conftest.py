"""Fixtures shared by the agent integration tests: real agent processes and a results
collector reading the results stream (see agent_harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agent_harness import AgentFleet, ResultsCollector

from kanade.bus.connection import Bus


@pytest.fixture
async def fleet(tmp_path: Path, nats_url: str) -> AsyncIterator[AgentFleet]:
    """Agents started under tmp_path; they and every script they started die afterwards."""
    f = AgentFleet(tmp_path / "agents", nats_url)
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
