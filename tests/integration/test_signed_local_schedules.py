"""The agent's local scheduler fires only from documents the backend signed (SPEC §8.2,
§3.6): a real ``kanade-agent`` process, its catalogs written through the test's signing
bus, then rewritten in KV by a plain NATS client without the key."""

from __future__ import annotations

import json

import nats
from agent_harness import AgentFleet, ResultsCollector, barrier, wait_agent_ready
from nats.js.kv import KV_DEL, KV_OP
from test_agent_scheduler_e2e import EVERY_SECOND, make_schedule, of, put_job, put_schedule

from kanade.bus import Bus
from kanade.bus.kv import kv_subject
from kanade.core import subjects
from secured import backend_credentials, session_authority


async def test_an_unsigned_job_rewrite_or_schedule_delete_changes_nothing_the_agent_fires(
    nats_url: str, bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    await put_job(bus, "tick", 'echo "signed $KANADE_TEST_PC"')
    await put_schedule(bus, make_schedule("each-second", "tick", {"cron": EVERY_SECOND}))
    await collector.wait(of("each-second"), 1, diagnostics=agent.log_tail)

    evil = json.loads((await (await bus.kv(subjects.KV_JOBS)).get("tick")).value or b"{}")
    evil["execute"]["script"] = "echo forged"
    attacker = await nats.connect(nats_url, name="pytest-attacker", **_broker_identity())
    try:
        js = attacker.jetstream()
        await js.publish(kv_subject(subjects.KV_JOBS, "tick"), json.dumps(evil).encode())
        await js.publish(
            kv_subject(subjects.KV_SCHEDULES, "each-second"), b"", headers={KV_OP: KV_DEL}
        )
    finally:
        await attacker.close()
    fired = len(collector.results_for(pc="pc-1", job="tick"))
    # Still firing after the attack, and still the signed script.
    await collector.wait(of("each-second"), fired + 3, diagnostics=agent.log_tail)
    await barrier(bus.js, bus.nc, collector, agent, timeout=30)
    outputs = {r.stdout for r in collector.results_for(pc="pc-1", job="tick")}
    assert outputs == {"signed pc-1\n"}, outputs
    assert "ignored KV kanade_jobs/tick" in agent.log_text()


def _broker_identity() -> dict[str, object]:
    """The backend's NATS credential without its signing key: what an attacker who stole
    the broker credential holds (every broker in the suite is secured, SPEC §8.1)."""
    return backend_credentials(session_authority()).connect_options()
