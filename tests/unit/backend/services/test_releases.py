"""The fleet's versions (SPEC §3.8): heartbeats carrying the agents' update state → counts per
version, quarantined agents and the targets the config layers set (`kanade agent current`,
`GET /api/agent-versions`)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from kanade.backend.services.agent_config import AgentConfigService
from kanade.backend.services.releases import ReleaseService
from kanade.backend.store import agents
from kanade.backend.store.database import Database
from kanade.backend.workers.heartbeats import HeartbeatSink
from kanade.bus import Bus
from kanade.core import subjects
from kanade.core.models.wire import AgentUpdate, Heartbeat, encode
from polling import eventually

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def heartbeat(pc_id: str, version: str, update: AgentUpdate | None = None) -> bytes:
    return encode(Heartbeat(pc_id=pc_id, agent_version=version, hostname=pc_id,
                            os_family="linux", update=update, sent_at=NOW))


async def test_versions_quarantines_and_targets(bus: Bus, db: Database) -> None:
    sink = HeartbeatSink(db, flush_interval_s=0.05, clock=lambda: NOW)
    await sink.subscribe(bus)
    task = asyncio.create_task(sink.run())
    config = AgentConfigService(db, lambda: bus)
    try:
        await config.set_layer("group", "canary", {"target_version": "0.3.0"}, actor="t")
        quarantined = AgentUpdate(state="quarantined", target="0.3.0", quarantined=["0.3.0"],
                                  error="failed its start-and-connect check 3 times")
        for pc, version, update in (
            ("pc1", "0.2.0", None),
            ("pc2", "0.2.0", quarantined),
            ("pc3", "0.1.0", AgentUpdate(state="downloading", target="0.2.0")),
        ):
            await bus.nc.publish(subjects.heartbeat_subject(pc), heartbeat(pc, version, update))
        await bus.nc.flush()

        async def three() -> bool:
            return len(await db.read(agents.list_agents)) == 3

        await eventually(three, "three agents")
        row = await db.read(lambda c: agents.get_agent(c, "pc2"))
        assert row is not None and row["agent_update"]["quarantined"] == ["0.3.0"]
        fleet = await ReleaseService(db, lambda: bus, config).fleet()
        assert fleet["total"] == 3
        assert fleet["versions"] == [{"version": "0.1.0", "count": 1},
                                     {"version": "0.2.0", "count": 2}]
        assert fleet["update_states"] == {"downloading": 1, "quarantined": 1}
        assert fleet["quarantined"] == [{
            "pc_id": "pc2", "versions": ["0.3.0"], "running": "0.2.0",
            "error": "failed its start-and-connect check 3 times",
        }]
        assert fleet["targets"] == {"group.canary": "0.3.0"}
        assert fleet["releases"] == []
        # The next heartbeat without an update report clears it.
        await bus.nc.publish(subjects.heartbeat_subject("pc2"), heartbeat("pc2", "0.2.0"))
        await bus.nc.flush()

        async def cleared() -> bool:
            found = await db.read(lambda c: agents.get_agent(c, "pc2"))
            return found is not None and found["agent_update"] is None

        await eventually(cleared, "pc2's update report cleared")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sink.unsubscribe()
