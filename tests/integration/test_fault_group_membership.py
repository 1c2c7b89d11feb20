"""SPEC §3.2 / issue #14 item 1: a group command reaches a pc only if the pc was a member of
the group when the command was issued — whatever happens to the broker or the agent's
command consumer afterwards.

Real processes: a nats-server, a ``kanade-backend``, ``kanade-agent`` processes. Every
script appends the pc that ran it to a file per exec, so executions are counted where
they happen, not only from results. The replays are proven to have happened (each one is
in the agent's log, ignored with the reason) so a pass is not a replay that never came.
Each test prints the SPEC §10.3 line (sent, executed, duplicated, lost) plus
``untargeted``: runs on a pc that was not a member when the command was issued.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from agent_harness import AgentFleet, AgentProcess, eventually
from rollout_stack import Backend, Stack, alive

from kanade.bus.connection import Bus
from kanade.core import subjects
from secured import connect_backend

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

BIN = Path(sys.executable).parent


class Runs:
    """Ad-hoc runs whose scripts record, per exec, every pc that ran them."""

    def __init__(self, b: Backend, marks: Path) -> None:
        self.b = b
        self.marks = marks
        marks.mkdir(parents=True, exist_ok=True)
        self.targeted: dict[str, set[str]] = {}  # exec id → the pcs it was for

    def run(self, target: dict[str, Any], members: set[str]) -> dict[str, Any]:
        """Run on ``target``; ``members`` are the pcs it is for (members at issue time)."""
        mark = self.marks / f"run-{len(self.targeted)}"
        script = f'echo "$KANADE_TEST_PC" >> {mark}'
        created = self.b.post_ok("/api/run", {"script": script, "target": target})
        created["mark"] = mark
        self.targeted[created["exec_id"]] = set(members)
        return created

    def ran(self, created: dict[str, Any]) -> list[str]:
        mark: Path = created["mark"]
        return mark.read_text().split() if mark.exists() else []

    def finished(self, created: dict[str, Any]) -> set[str]:
        items = self.b.get("/api/results", exec_id=created["exec_id"], limit=100)["items"]
        return {r["pc_id"] for r in items if r["state"] == "finished"}

    async def wait_done(self, created: dict[str, Any]) -> None:
        want = self.targeted[created["exec_id"]]
        await eventually(lambda: self.finished(created) >= want, timeout=30,
                         what=f"results of {created['exec_id']} from {sorted(want)}")  # fmt: skip

    def report(self, fault: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
        sent = executed = duplicated = lost = untargeted = 0
        for created in runs:
            want = self.targeted[created["exec_id"]]
            counts = Counter(self.ran(created))
            sent += len(want)
            executed += sum(1 for pc in want if counts[pc])
            duplicated += sum(n - 1 for pc, n in counts.items() if n > 1)
            lost += sum(1 for pc in want if not counts[pc])
            untargeted += sum(1 for pc in counts if pc not in want)
        return {
            "fault": fault,
            "sent": sent,
            "executed": executed,
            "duplicated": duplicated,
            "lost": lost,
            "untargeted": untargeted,
        }


def reported_groups(b: Backend, pc: str) -> list[str] | None:
    """The groups the pc's latest heartbeat reports (sent after its consumer follows them)."""
    for a in b.get("/api/agents", limit=100)["items"]:
        if a["pc_id"] == pc:
            return list(a.get("groups") or [])
    return None


async def until_groups(b: Backend, pc: str, groups: list[str]) -> None:
    await eventually(lambda: reported_groups(b, pc) == groups, timeout=20,
                     what=f"{pc} reports groups {groups}")  # fmt: skip


def ignored(agent: AgentProcess, request_id: str) -> int:
    """How often the agent received ``request_id`` and ignored it as issued before it
    joined the group."""
    return sum(
        1
        for line in agent.log_text().splitlines()
        if f"ignored command {request_id}" in line and "before this pc joined group" in line
    )


async def consumer_created(bus: Bus, pc: str) -> object:
    info = await bus.js.consumer_info(subjects.STREAM_COMMANDS, subjects.agent_consumer_name(pc))
    return info.created


async def until_dealt_with(
    bus: Bus, agent: AgentProcess, seq: int, *, group: str | None, replaced: object = None
) -> object:
    """Until the pc's command consumer reads ``group``, has delivered stream message
    ``seq`` (and any later) and the agent acked every delivery (it decided each); with
    ``replaced``, a consumer created since (not the one created at ``replaced``).
    ``seq`` 0: only reading the group. Returns the consumer's creation time."""
    name = subjects.agent_consumer_name(agent.pc_id)

    last: list[object] = [None]  # the consumer last seen, for the failure message

    async def check() -> object:
        info = await bus.js.consumer_info(subjects.STREAM_COMMANDS, name)
        last[0] = info
        filters = info.config.filter_subjects or []
        reads = group is None or subjects.command_subject("group", group, "*") in filters
        fresh = replaced is None or info.created != replaced
        done = info.delivered.stream_seq >= seq and info.num_ack_pending == 0
        return info.created if reads and fresh and done else None

    return await eventually(check, timeout=30,
                            diagnostics=lambda: f"{agent.log_tail()}\nconsumer: {last[0]}",
                            what=f"{agent.pc_id}'s consumer dealt with message {seq}")  # fmt: skip


async def stream_seq(bus: Bus, created: dict[str, Any], group: str | None) -> int:
    """The stream sequence of an ad-hoc run's command on ``group`` (None: fleet-wide)."""
    scope: subjects.Scope = "all" if group is None else "group"
    subject = subjects.command_subject(scope, group, created["job_id"])
    return int((await bus.js.get_last_msg(subjects.STREAM_COMMANDS, subject)).seq)


async def test_a_pc_that_joins_a_group_later_never_runs_its_earlier_command(
    stack: Stack, fleet: AgentFleet, tmp_path: Path
) -> None:
    """The issue's scenario: ops = {local-1}; run --group ops; local-2 joins ops; then
    local-2's consumer is deleted, and the broker is restarted. local-2 must never run
    the command, local-1 runs it once, and a later ops command runs on both."""
    b = stack.backend()
    for pc in ("local-1", "local-2"):
        fleet.add(pc, heartbeat_interval=0.5)
    await eventually(lambda: alive(b, 2, "local-"), what="2 agents alive")
    runs = Runs(b, tmp_path / "marks")
    b.post_ok("/api/groups/ops/members", {"pcs": ["local-1"]})
    await until_groups(b, "local-1", ["ops"])

    first = runs.run({"groups": ["ops"]}, {"local-1"})
    assert first["expected_pcs"] == ["local-1"]
    await runs.wait_done(first)
    request_id = b.get(f"/api/executions/{first['exec_id']}")["request_id"]

    added = b.post_ok("/api/groups/ops/members", {"pcs": ["local-2"]})["items"]
    assert list(added[0]["since"]) == ["ops"]  # the join instant, on the backend's clock
    local2 = fleet["local-2"]
    bus = await connect_backend(stack.broker.url, stack.authority)
    try:
        seq = await stream_seq(bus, first, "ops")
        # Joining: local-2's consumer reads ops (re-created, it replays the command).
        created = await until_dealt_with(bus, local2, 0, group="ops")
        replays = [ignored(local2, request_id)]
        # Fault 1: the consumer is deleted; the agent gets a new one, which replays it.
        await bus.js.delete_consumer(subjects.STREAM_COMMANDS, "agent-local-2")
        created = await until_dealt_with(bus, local2, seq, group="ops", replaced=created)
        replays.append(ignored(local2, request_id))
        # Fault 2: the broker restarts; every (memory) consumer is gone and re-created.
        await asyncio.to_thread(stack.broker.restart)
        await until_dealt_with(bus, local2, seq, group="ops", replaced=created)
        replays.append(ignored(local2, request_id))
        # A later ops command reaches both: membership works, nothing was over-filtered.
        later = runs.run({"groups": ["ops"]}, {"local-1", "local-2"})
        await runs.wait_done(later)
    finally:
        await bus.close()

    report = runs.report("group_join_then_consumer_loss", [first, later])
    print(json.dumps(report))
    assert runs.ran(first) == ["local-1"], runs.ran(first)
    assert runs.finished(first) == {"local-1"}
    shown = b.get(f"/api/executions/{first['exec_id']}")
    assert (shown["expected_count"], shown["finished_count"]) == (1, 1), shown
    assert report == {**report, "duplicated": 0, "lost": 0, "untargeted": 0}
    assert report["executed"] == report["sent"] == 3
    # Each fault replayed the command to local-2, which ignored it, saying why.
    assert replays[0] < replays[1] < replays[2], (replays, local2.log_tail())


@pytest.mark.slow
async def test_membership_at_issue_time_across_joins_leaves_rejoins_and_restarts(
    stack: Stack, fleet: AgentFleet, tmp_path: Path
) -> None:
    """The fuller version, through the ``kanade`` CLI as an operator would: several pcs
    join later, one leaves and joins again (the command issued while it was out, and the
    one from before it left, must not reach it), a pc enrolled after a fleet-wide
    command never runs it; consumers deleted, then the broker restarted twice."""
    b = stack.backend()
    env = {**os.environ, "KANADE_URL": b.url}

    def kanade(*args: str) -> str:
        done = subprocess.run([str(BIN / "kanade"), *args], capture_output=True, text=True,
                              env=env, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    early = [f"pc-{i}" for i in range(1, 4)]
    late = [f"pc-{i}" for i in range(4, 7)]
    for pc in early + late:
        fleet.add(pc, heartbeat_interval=0.5)
    await eventually(lambda: alive(b, 6, "pc-"), what="6 agents alive")
    runs = Runs(b, tmp_path / "marks")
    kanade("group", "add", "ops", *early)
    for pc in early:
        await until_groups(b, pc, ["ops"])

    before = runs.run({"groups": ["ops"]}, set(early))  # pc-3 will leave and come back
    fleet_wide = runs.run({"all": True}, set(early + late))
    for created in (before, fleet_wide):
        await runs.wait_done(created)
    kanade("group", "rm", "ops", "pc-3")
    await until_groups(b, "pc-3", [])
    while_out = runs.run({"groups": ["ops"]}, set(early) - {"pc-3"})
    await runs.wait_done(while_out)
    kanade("group", "add", "ops", "pc-3", *late)
    for pc in ["pc-3", *late]:
        await until_groups(b, pc, ["ops"])
    # A pc enrolled after the fleet-wide command: not for it either.
    fleet.add("pc-7", heartbeat_interval=0.5)
    await eventually(lambda: alive(b, 7, "pc-"), what="pc-7 alive")

    bus = await connect_backend(stack.broker.url, stack.authority)
    try:
        # What each consumer must have replayed: the newest ops command, and for the
        # newcomer (no group) the fleet-wide one.
        newest = {pc: await stream_seq(bus, while_out, "ops") for pc in ["pc-3", *late]}
        newest["pc-7"] = await stream_seq(bus, fleet_wide, None)
        group = {pc: None if pc == "pc-7" else "ops" for pc in newest}
        created = {pc: await until_dealt_with(bus, fleet[pc], 0, group=group[pc])
                   for pc in newest}  # fmt: skip
        # Fault 1: the consumers of every pc that (re)joined, and the newcomer's, deleted.
        for pc in newest:
            await bus.js.delete_consumer(subjects.STREAM_COMMANDS, f"agent-{pc}")
        for pc, seq in newest.items():
            created[pc] = await until_dealt_with(bus, fleet[pc], seq, group=group[pc],
                                                 replaced=created[pc])  # fmt: skip
        # Fault 2, twice: the broker restarts; every consumer is re-created and replays.
        for _ in range(2):
            await asyncio.to_thread(stack.broker.restart)
            for pc, seq in newest.items():
                created[pc] = await until_dealt_with(bus, fleet[pc], seq, group=group[pc],
                                                     replaced=created[pc])  # fmt: skip
        after = runs.run({"groups": ["ops"]}, set(early + late))
        everyone = runs.run({"all": True}, {f"pc-{i}" for i in range(1, 8)})
        for done in (after, everyone):
            await runs.wait_done(done)
    finally:
        await bus.close()

    all_runs = [before, fleet_wide, while_out, after, everyone]
    report = runs.report("group_joins_leaves_and_broker_restarts", all_runs)
    print(json.dumps(report))
    assert sorted(runs.ran(before)) == early
    assert "pc-7" not in runs.ran(fleet_wide) and "pc-3" not in runs.ran(while_out)
    for run in all_runs:
        shown = b.get(f"/api/executions/{run['exec_id']}")
        assert shown["finished_count"] == shown["expected_count"], shown
    assert report == {**report, "duplicated": 0, "lost": 0, "untargeted": 0}
    assert report["executed"] == report["sent"]
    # The replays happened and were turned away with the reason (3 faults each).
    for pc in late:
        rid = b.get(f"/api/executions/{before['exec_id']}")["request_id"]
        assert ignored(fleet[pc], rid) >= 3, fleet[pc].log_tail()
