"""The heartbeat sink as a worker, on a real broker and SQLite file: the newest heartbeat
per pc lands at the next step; a payload claiming another pc's subject is dropped."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from kanade.backend.store import agents
from kanade.backend.store.database import Database
from kanade.backend.workers.heartbeats import HeartbeatSink, heartbeat_row
from kanade.bus import Bus
from kanade.core import subjects
from kanade.core.models.wire import Heartbeat, encode
from polling import eventually

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def heartbeat(pc_id: str, version: str) -> bytes:
    return encode(
        Heartbeat(
            pc_id=pc_id, agent_version=version, hostname=pc_id, os_family="linux", sent_at=NOW
        )
    )


async def test_newest_heartbeat_per_pc_is_stored(bus: Bus, db: Database) -> None:
    sink = HeartbeatSink(db, flush_interval_s=0.05, clock=lambda: NOW)
    await sink.subscribe(bus)
    task = asyncio.create_task(sink.run())
    try:
        # Claims pc9 on pc2's subject: not trusted. Sent first, so it would be stored
        # no later than pc1's last heartbeat.
        await bus.nc.publish(subjects.heartbeat_subject("pc2"), heartbeat("pc9", "1"))
        await bus.nc.publish(subjects.heartbeat_subject("pc1"), heartbeat("pc1", "1"))
        await bus.nc.publish(subjects.heartbeat_subject("pc1"), heartbeat("pc1", "2"))
        await bus.nc.flush()

        async def stored() -> list[tuple[str, str, datetime]] | None:
            rows = await db.read(agents.list_agents)
            got = [(r["pc_id"], r["agent_version"], r["last_seen"]) for r in rows]
            return got if got and got[0][1] == "2" else None

        assert await eventually(stored, "pc1's newest heartbeat") == [("pc1", "2", NOW)]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sink.unsubscribe()


def test_a_stopping_heartbeat_records_when_the_agent_stopped() -> None:
    hb = Heartbeat(pc_id="pc1", agent_version="1", hostname="h", os_family="linux", sent_at=NOW)
    assert heartbeat_row(hb, NOW)["stopped_at"] is None
    bye = hb.model_copy(update={"stopping": True})
    assert heartbeat_row(bye, NOW)["stopped_at"] == NOW  # the backend's clock, like last_seen
