"""Script objects (SPEC §2.1 ``script_object``, §8.3) and fleet state that survives a restart.

Real nats-server, real agent processes, real object store. A script stored as an object is
fetched by the agent, verified against the sha256 the backend pinned into the command,
cached on disk and run; anything that does not verify is refused (123), never run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from agent_harness import (
    AgentFleet,
    Outgoing,
    ResultsCollector,
    build_command,
    publish,
    wait_agent_ready,
)

from kanade.agent.fleet.state import FleetState
from kanade.agent.runtime import Agent
from kanade.agent.scripts import ScriptCache, ScriptRejected, ScriptUnavailable
from kanade.agent.settings import AgentSettings
from kanade.bus.connection import Bus
from kanade.core import exitcodes, subjects
from kanade.core.digests import sha256_hex

SCRIPT = b"echo from-object-$((6*7))\n"


def object_command(job: str, pc: str, name: str, sha256: str | None) -> Outgoing:
    """A command that names a script object instead of carrying the script."""
    base = build_command(job, "", target=pc)
    cmd = base.command.model_copy(
        update={"script": None, "script_object": name, "script_sha256": sha256}
    )
    return Outgoing(base.subject, cmd)


async def test_script_object_is_fetched_verified_and_run(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    store = await bus.obj(subjects.OBJ_SCRIPTS)
    await store.put("greet/1", SCRIPT)
    agent = fleet.add("so-1")
    await wait_agent_ready(bus.nc, agent)

    good = object_command("greet", "so-1", "greet/1", sha256_hex(SCRIPT))
    await publish(bus.js, good)
    result = await collector.wait_for_request(good, "so-1", diagnostics=agent.log_tail)
    assert (result.exit_code, result.stdout, result.skipped) == (0, "from-object-42\n", False)
    cached = agent.data_dir / "scripts" / f"{sha256_hex(SCRIPT)}.script"
    assert cached.read_bytes() == SCRIPT

    # A command pinned to another digest (tampered object, or a stale pin) is refused.
    await store.put("greet/2", b"echo evil\n")
    tampered = object_command("greet2", "so-1", "greet/2", sha256_hex(b"echo good\n"))
    await publish(bus.js, tampered)
    refused = await collector.wait_for_request(tampered, "so-1", diagnostics=agent.log_tail)
    assert refused.skipped and refused.exit_code == exitcodes.REFUSED
    assert "sha256" in refused.stderr and "evil" not in refused.stdout

    # No pin at all is refused too; a missing object is reported, not run.
    unpinned = object_command("greet3", "so-1", "greet/1", None)
    missing = object_command("greet4", "so-1", "nope/1", "0" * 64)
    await publish(bus.js, unpinned)
    await publish(bus.js, missing)
    r3 = await collector.wait_for_request(unpinned, "so-1")
    r4 = await collector.wait_for_request(missing, "so-1")
    assert r3.skipped and r3.exit_code == exitcodes.REFUSED and "no sha256" in r3.stderr
    assert r4.skipped and r4.exit_code == exitcodes.UNSUPPORTED and "nope/1" in r4.stderr


async def test_script_cache_serves_verified_scripts_offline(bus: Bus, tmp_path: Path) -> None:
    store = await bus.obj(subjects.OBJ_SCRIPTS)
    await store.put("offline/1", SCRIPT)
    cache = ScriptCache(tmp_path / "scripts")
    digest = sha256_hex(SCRIPT)
    assert await cache.resolve(bus.nc, "offline/1", digest) == SCRIPT.decode()
    # Broker gone (no connection): the verified copy on disk still serves.
    assert await cache.resolve(None, "offline/1", digest) == SCRIPT.decode()
    with pytest.raises(ScriptUnavailable):
        await cache.resolve(None, "other/1", sha256_hex(b"other"))
    # A cached copy corrupted on disk is discarded, never run.
    (tmp_path / "scripts" / f"{digest}.script").write_bytes(b"rm -rf /tmp/x\n")
    with pytest.raises(ScriptUnavailable):
        await cache.resolve(None, "offline/1", digest)
    with pytest.raises(ScriptRejected):
        await cache.resolve(bus.nc, "offline/1", None)


def test_fleet_state_survives_a_restart_without_broker(tmp_path: Path) -> None:
    """An agent restarted while the broker is away still honours the revocations and pins
    it had seen, and its staleness is measured from its last real sync."""
    settings = AgentSettings(pc_id="fs-1", data_dir=tmp_path / "fs-1", nats_urls=["nats://x"])
    seen = FleetState(pc_id="fs-1", groups=[])
    seen.revocations.values = {"wipe-disk": json.dumps({"by": "ops"}).encode()}
    seen.pins.values = {"deploy": b"7"}
    in_sync_at = time.time() - 120
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "fleet-state.json").write_bytes(seen.snapshot(in_sync_at))

    agent = Agent(settings)
    assert agent.kv_view().revoked == frozenset()  # nothing known before restoring
    agent.fleet_view.restore()
    view = agent.kv_view()
    assert "wipe-disk" in view.revoked and view.pins == {"deploy": "7"}
    assert 119 <= view.age_s <= 130

    (settings.data_dir / "fleet-state.json").write_bytes(b"{not json")
    fresh = Agent(AgentSettings(pc_id="fs-1", data_dir=settings.data_dir, nats_urls=["x"]))
    fresh.fleet_view.restore()
    assert fresh.kv_view().revoked == frozenset()
    assert fresh.kv_view().age_s == float("inf")  # never synced: strict staleness skips
