"""SPEC §10.3: kill -9 and restart the broker during a 1 000-agent fan-out.

1 000 simulated agents (the swarm, in this process, real agent code, stub script
step) receive one broadcast; once results are flowing the broker is killed with
SIGKILL and restarted. The agents' command consumers live in broker memory, so
they are gone after the restart: every agent re-creates its consumer, the command
is replayed to all of them, and their ledgers must turn every replay away. Reports
commands sent, executed, duplicated and results lost; the last two must be 0.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from agent_harness import ResultsCollector, build_command, eventually, publish

from kanade.agent.swarm import Swarm, SwarmSpec
from kanade.bus import Bus, EmbeddedBroker
from kanade.core import subjects
from kanade.core.ids import result_id_for
from kanade.security.authority import Authority
from secured import swarm_credentials

N = 1000

pytestmark = pytest.mark.slow


async def test_broker_kill9_during_a_1000_agent_fanout_loses_and_duplicates_nothing(
    tmp_path: Path,
    nats_server: EmbeddedBroker,
    bus: Bus,
    collector: ResultsCollector,
    authority: Authority,
) -> None:
    swarm = Swarm(
        SwarmSpec(
            agents=N,
            nats_urls=[nats_server.url],
            data_dir=tmp_path / "swarm",
            credentials=swarm_credentials(authority, tmp_path / "swarm-trust"),
        )
    )
    ready = asyncio.Event()
    task = asyncio.ensure_future(swarm.run(on_ready=lambda _: ready.set()))
    try:
        await asyncio.wait_for(ready.wait(), 180)
        out = build_command("fanout-through-crash", "echo ok", scope="all")
        await publish(bus.js, out)

        def pcs_with_results() -> set[str]:
            return {r.pc_id for r in collector.results_for(request_id=out.request_id)}

        await eventually(lambda: len(pcs_with_results()) >= 1, timeout=60,
                         what="results flowing before the crash")
        nats_server.kill()
        at_crash = len(pcs_with_results())
        down_since = time.monotonic()
        await eventually(lambda: time.monotonic() - down_since >= 2.0, timeout=10,
                         what="broker down for 2 s")
        nats_server.restart()

        await eventually(lambda: len(pcs_with_results()) >= N, timeout=240,
                         what=f"results from all {N} agents",
                         diagnostics=lambda: f"{len(pcs_with_results())} of {N} so far")
        # Every agent re-created its consumer, so the broadcast was replayed to all of
        # them. A second broadcast is behind it in the stream, and agents admit in
        # stream order: once all its results are in, every replay was dealt with.
        after = build_command("after-crash", "echo ok", scope="all")
        await publish(bus.js, after)
        await eventually(
            lambda: len({r.pc_id for r in collector.results_for(request_id=after.request_id)})
            >= N, timeout=120, what="the second broadcast everywhere")
        # The replay really happened (so the ledgers were tested): a sample of consumers
        # delivered the first broadcast twice, then the second.
        for agent in swarm.agents[:: N // 20]:
            info = await bus.js.consumer_info(
                subjects.STREAM_COMMANDS, subjects.agent_consumer_name(agent.pc_id)
            )
            assert info.delivered.consumer_seq >= 2, (agent.pc_id, info)
        expected = {result_id_for(out.request_id, a.pc_id) for a in swarm.agents}
        runs = {rid: n for rid, n in swarm.executions.items() if rid in expected}
        report = {
            "name": "fault.broker_kill9_fanout",
            "agents": N,
            "results_before_crash": at_crash,
            "sent": N,
            "executed": len(runs),
            "duplicated": sum(n - 1 for n in runs.values()),
            "lost": N - len(pcs_with_results()),
        }
        print(json.dumps(report))
        assert report["executed"] == N, report
        assert report["duplicated"] == 0, report
        assert report["lost"] == 0, report
        assert len(collector.results_for(request_id=out.request_id)) == N
    finally:
        swarm.stop()
        await asyncio.wait_for(task, 120)
