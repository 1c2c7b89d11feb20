"""SPEC §3.4, §3.2: a kill, a timeout or the agent's own death ends a script's WHOLE tree —
a grandchild that left the process group with ``setsid`` included.

Each test runs twice: with the machine's best containment (``auto``: a cgroup v2 per script
where this host allows it, which is asserted from the agent's log, else skipped) and with
the portable fallback (``tracking``: process group + descendants tracked with psutil +
the run's marker in the environment). Real agent processes, real broker, real scripts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_harness import (
    AgentFleet,
    AgentProcess,
    ResultsCollector,
    build_command,
    eventually,
    process_gone,
    publish,
    send_kill,
    wait_agent_ready,
)

from kanade.agent.containment.cgroup import probe_cgroups
from kanade.bus import Bus
from kanade.core import exitcodes

# The shell's own child, plus a daemon that double-forked into a session of its own (its
# parent exits at once, so it is nobody's descendant by the time anything looks).
TREE_SCRIPT = (
    'echo $$ > "$D/sh.pid"; '
    "sleep 300 & echo $! > \"$D/child.pid\"; "
    "setsid -f sh -c 'trap \"\" TERM; echo $$ > \"$D/daemon.pid\"; while :; do sleep 1; done'; "
    'while [ ! -s "$D/daemon.pid" ]; do sleep 0.05; done; touch "$D/ready"; wait'
)
PIDS = ("sh.pid", "child.pid", "daemon.pid")


@pytest.fixture(params=["auto", "tracking"])
def containment(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    if mode == "auto":
        probe = probe_cgroups()
        if probe.base is None:
            pytest.skip(f"cgroup v2 containment is not usable on this host: {probe.reason}")
    return mode


async def _agent(fleet: AgentFleet, bus: Bus, pc: str, containment: str) -> AgentProcess:
    agent = fleet.add(pc, extra_args=["--containment", containment])
    await wait_agent_ready(bus.nc, agent)
    wanted = "cgroup v2" if containment == "auto" else "descendant tracking"
    assert wanted in agent.log_text(), agent.log_tail()
    return agent


async def _tree(d: Path, agent: AgentProcess) -> list[int]:
    def pids() -> list[int] | None:
        if not (d / "ready").exists():
            return None
        return [int((d / n).read_text()) for n in PIDS]

    found: list[int] = await eventually(pids, what="script tree running",
                                        diagnostics=agent.log_tail)
    assert not any(process_gone(p) for p in found)
    return found


async def test_remote_kill_ends_a_setsid_grandchild(
    tmp_path: Path, bus: Bus, fleet: AgentFleet, collector: ResultsCollector, containment: str
) -> None:
    agent = await _agent(fleet, bus, "tree-1", containment)
    out = build_command("tree", TREE_SCRIPT, target="tree-1", timeout_s=120,
                        env={"D": str(tmp_path)})
    await publish(bus.js, out)
    pids = await _tree(tmp_path, agent)

    await send_kill(bus.nc, out.command.exec_id)
    r = await collector.wait_for_request(out, "tree-1", diagnostics=agent.log_tail)
    assert r.exit_code == exitcodes.KILLED and r.note and "killed by remote request" in r.note
    # Reported only once the tree is gone: nothing left by the time the result exists.
    assert [p for p in pids if not process_gone(p)] == [], agent.log_tail()


async def test_timeout_ends_a_setsid_grandchild(
    tmp_path: Path, bus: Bus, fleet: AgentFleet, collector: ResultsCollector, containment: str
) -> None:
    agent = await _agent(fleet, bus, "tree-2", containment)
    out = build_command("tree", TREE_SCRIPT, target="tree-2", timeout_s=2,
                        env={"D": str(tmp_path)})
    await publish(bus.js, out)
    pids = await _tree(tmp_path, agent)
    r = await collector.wait_for_request(out, "tree-2", diagnostics=agent.log_tail)
    assert r.exit_code == exitcodes.KILLED and r.note and "timeout after 2s" in r.note
    assert [p for p in pids if not process_gone(p)] == [], agent.log_tail()


async def test_a_dead_agents_script_tree_is_gone_when_it_reports_outcome_unknown(
    tmp_path: Path, bus: Bus, fleet: AgentFleet, collector: ResultsCollector, containment: str
) -> None:
    agent = await _agent(fleet, bus, "tree-3", containment)
    out = build_command("tree", TREE_SCRIPT, target="tree-3", timeout_s=120,
                        env={"D": str(tmp_path)})
    await publish(bus.js, out)
    pids = await _tree(tmp_path, agent)

    await agent.kill9()
    agent.start()
    r = await collector.wait_for_request(out, "tree-3", diagnostics=agent.log_tail)
    assert r.exit_code == exitcodes.KILLED and "outcome unknown" in r.stderr
    assert [p for p in pids if not process_gone(p)] == [], agent.log_tail()
    assert "killed" in agent.log_text() and "left by the previous run" in agent.log_text()
