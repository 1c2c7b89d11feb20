"""The bus fuzzer (issue #15): malformed, wrong-typed, out-of-range and oversized messages on
every subject a real ``kanade-backend`` and a real ``kanade-agent`` consume (busfuzz.py),
published with the backend's own broker identity — the broadest an attacker could hold.

Afterwards:

* no consumer has anything pending or unacknowledged (the backend's projectors and the
  agent's command consumer): nothing is stuck;
* both processes still run, and their resident memory grew within bounds;
* the agent is still alive in the fleet view and a real ``kanade run`` on it works.

One JSON line reports the messages sent per family (and per kind of bad), the broker's
refusals (a message over a stream's size limit), the stuck count and the memory growth.
The fast variant sends a few dozen of each; ``slow`` sends hundreds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from agent_harness import AgentFleet
from busfuzz import Shot, campaign
from nats.aio.client import Client
from nats.errors import Error as NatsError
from rollout_stack import Stack, alive, wait_for

from kanade.core import subjects
from polling import eventually
from secured import connect_backend

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

PC = "fz-1"
GROUP = "fzgrp"
BIN = Path(sys.executable).parent
CONSUMERS = ("projector-results", "projector-execs", "projector-audit")
MB = 1024 * 1024


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / MB


async def fire(nc: Client, shots: list[Shot]) -> tuple[Counter[str], Counter[str], int]:
    """Publish every shot; (sent per family, sent per kind, refused by the broker)."""
    js = nc.jetstream(timeout=10)
    per_family: Counter[str] = Counter()
    per_kind: Counter[str] = Counter()
    refused = 0
    for i, shot in enumerate(shots):
        try:
            if shot.transport == "js":
                await js.publish(shot.subject, shot.payload)
            elif shot.transport == "request":
                # An answer is not required; not crashing is.
                with contextlib.suppress(TimeoutError, NatsError):
                    await nc.request(shot.subject, shot.payload, timeout=2)
            else:
                await nc.publish(shot.subject, shot.payload)
        except NatsError:
            refused += 1  # e.g. over the stream's max message size: the broker said no
        per_family[shot.family] += 1
        per_kind[shot.kind] += 1
        if i % 50 == 0:
            await nc.flush()
    await nc.flush()
    return per_family, per_kind, refused


async def stuck(nc: Client) -> dict[str, tuple[int, int]]:
    """(pending, unacknowledged) of every consumer that is not yet at rest."""
    js = nc.jetstream(timeout=10)
    names = [(subjects.STREAM_RESULTS, c) for c in CONSUMERS[:1]]
    names += [(subjects.STREAM_EXECS, CONSUMERS[1]), (subjects.STREAM_AUDIT, CONSUMERS[2])]
    names += [(subjects.STREAM_COMMANDS, subjects.agent_consumer_name(PC))]
    out: dict[str, tuple[int, int]] = {}
    for stream, name in names:
        info = await js.consumer_info(stream, name)
        if info.num_pending or info.num_ack_pending:
            out[name] = (info.num_pending, info.num_ack_pending)
    return out


async def fuzz(stack: Stack, fleet: AgentFleet, per_family: int) -> None:
    b = stack.backend()
    agent = fleet.add(PC, (GROUP,), heartbeat_interval=1.0)
    wait_for(lambda: alive(b, 1, PC), what="agent alive")
    assert agent.pid is not None
    backend_rss0, agent_rss0 = rss_mb(b.proc.pid), rss_mb(agent.pid)
    bus = await connect_backend(stack.broker.url, stack.authority, name="pytest-fuzzer")
    try:
        shots = list(campaign(PC, GROUP, per_family))
        t0 = time.monotonic()
        per_family_sent, per_kind, refused = await fire(bus.nc, shots)
        fired_s = time.monotonic() - t0

        left: dict[str, tuple[int, int]] = {}

        async def at_rest() -> bool:
            left.clear()
            left.update(await stuck(bus.nc))
            return not left

        await eventually(at_rest, timeout=60, interval=0.2, what="every consumer at rest",
                         diagnostics=lambda: f"stuck consumers: {left}")  # fmt: skip
        settled_s = time.monotonic() - t0
    finally:
        await bus.close()

    assert b.proc.poll() is None, b.log.read_text()[-3000:]
    assert agent.is_running(), agent.log_tail()
    # Every bad message was an expected case: dropped with a warning, never an exception.
    for name, text in (("backend", b.log.read_text()), ("agent", agent.log_text())):
        assert "Traceback" not in text, f"{name} raised:\n" + _around(text, "Traceback")
    backend_growth = rss_mb(b.proc.pid) - backend_rss0
    agent_growth = rss_mb(agent.pid) - agent_rss0
    wait_for(lambda: alive(b, 1, PC), what="agent still alive after the fuzz")

    run = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "kanade"), "run", "--pc", PC, "--timeout", "20s", "--", "echo", "survived"],
        capture_output=True, text=True, timeout=90, check=False,
        env={**os.environ, "KANADE_URL": b.url},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "survived" in run.stdout
    assert backend_growth < 50, f"backend RSS grew {backend_growth:.0f} MB"
    assert agent_growth < 30, f"agent RSS grew {agent_growth:.0f} MB"
    print(json.dumps({
        "fuzz": "bus", "messages": sum(per_family_sent.values()),
        "per_family": dict(sorted(per_family_sent.items())), "per_kind": dict(per_kind),
        "refused_by_broker": refused, "stuck": 0, "fired_s": round(fired_s, 1),
        "settled_s": round(settled_s, 1), "backend_rss_growth_mb": round(backend_growth, 1),
        "agent_rss_growth_mb": round(agent_growth, 1),
    }))  # fmt: skip


def _around(text: str, needle: str, lines: int = 30) -> str:
    at = text.index(needle)
    return "\n".join(line[:300] for line in text[at:].splitlines()[:lines])


async def test_bus_fuzz(stack: Stack, fleet: AgentFleet) -> None:
    await fuzz(stack, fleet, per_family=25)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_bus_fuzz_large(stack: Stack, fleet: AgentFleet) -> None:
    await fuzz(stack, fleet, per_family=250)
