"""A kill also covers a command of that exec that reaches the agent after the kill
(fetched but not yet admitted when the kill arrived): it is reported, never run."""

from __future__ import annotations

from pathlib import Path

from agent_harness import (
    AgentFleet,
    ResultsCollector,
    build_command,
    ping,
    publish,
    send_kill,
    wait_agent_ready,
)

from kanade.bus.connection import Bus
from kanade.core import exitcodes


async def test_late_command_of_a_killed_exec_never_runs(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector, tmp_path: Path
) -> None:
    agent = fleet.add("km-1")
    await wait_agent_ready(bus.nc, agent)
    marker = tmp_path / "ran"
    late = build_command("late-job", f"touch {marker}", target="km-1")
    await send_kill(bus.nc, late.command.exec_id)
    # The kill is a core-NATS broadcast; a ping round trip afterwards proves the agent
    # has processed it (messages on one connection are handled in order).
    await ping(bus.nc, "km-1")
    await publish(bus.js, late)
    result = await collector.wait_for_request(late, "km-1", diagnostics=agent.log_tail)
    assert result.skipped and result.exit_code == exitcodes.KILLED
    assert "kill" in result.stderr
    assert not marker.exists()

    other = build_command("other-job", "echo fine", target="km-1")
    await publish(bus.js, other)
    ok = await collector.wait_for_request(other, "km-1")
    assert ok.exit_code == 0 and ok.stdout == "fine\n"
