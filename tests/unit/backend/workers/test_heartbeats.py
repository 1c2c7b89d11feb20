"""The heartbeat sink as a worker, on a real broker and SQLite file: the newest heartbeat
per pc lands at the next step; a payload claiming another pc's subject is dropped; one out of
bounds, or one the database refuses, is dropped and counted without holding the others."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

from kanade.backend.store import agents
from kanade.backend.store.database import Database
from kanade.backend.workers.heartbeats import HeartbeatSink, heartbeat_row, quarantine_events
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


def _drops() -> tuple[list[tuple[str, str]], Any]:
    seen: list[tuple[str, str]] = []
    return seen, lambda kind, reason: seen.append((kind, reason))


async def test_an_out_of_bounds_heartbeat_is_dropped_counted_and_blocks_nobody(
    bus: Bus, db: Database
) -> None:
    """Issue #15 item 4: ``rss_bytes = 2^64`` once made every later flush fail (SQLite
    integer overflow) and the whole fleet went stale. It is refused at decode now."""
    dropped, on_dropped = _drops()
    sink = HeartbeatSink(db, flush_interval_s=0.05, clock=lambda: NOW, on_dropped=on_dropped)
    await sink.subscribe(bus)
    task = asyncio.create_task(sink.run())
    try:
        bad = json.loads(heartbeat("pc1", "1"))
        bad["rss_bytes"] = 2**64
        await bus.nc.publish(subjects.heartbeat_subject("pc1"), json.dumps(bad).encode())
        await bus.nc.publish(subjects.heartbeat_subject("pc2"), heartbeat("pc2", "1"))
        await bus.nc.flush()

        async def pc2_stored() -> bool:
            return [r["pc_id"] for r in await db.read(agents.list_agents)] == ["pc2"]

        await eventually(pc2_stored, "the good heartbeat stored")
        assert dropped == [("heartbeat", "invalid")]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sink.unsubscribe()


async def test_a_row_the_database_refuses_is_dropped_alone(db: Database) -> None:
    """Past decode, a row SQLite still cannot store (here forced past the bounds) is
    isolated: the other pcs' rows are written, it is dropped and counted, not retried."""
    dropped, on_dropped = _drops()
    sink = HeartbeatSink(db, clock=lambda: NOW, on_dropped=on_dropped)
    good = Heartbeat(pc_id="pc2", agent_version="1", hostname="h", os_family="linux", sent_at=NOW)
    unwritable = good.model_copy(update={"pc_id": "pc1", "rss_bytes": 2**64})
    sink._pending = {
        "pc1": heartbeat_row(unwritable, NOW),
        "pc2": heartbeat_row(good, NOW),
    }
    await sink.flush()
    assert [r["pc_id"] for r in await db.read(agents.list_agents)] == ["pc2"]
    assert dropped == [("heartbeat", "unwritable")]
    assert sink._pending == {}  # nothing kept for a retry that would fail forever
    await sink.flush()
    assert dropped == [("heartbeat", "unwritable")]


def test_a_quarantined_version_in_a_heartbeat_is_a_notification_event() -> None:
    hb = Heartbeat.model_validate(
        {"pc_id": "pc1", "agent_version": "1", "hostname": "h", "os_family": "linux",
         "sent_at": NOW.isoformat(),
         "update": {"state": "quarantined", "target": "2", "quarantined": ["2"],
                    "error": "failed its start-and-connect check 3 times"}}
    )  # fmt: skip
    [event] = quarantine_events(hb, NOW)
    assert event.kind == "agent.quarantined" and event.occurred_at == NOW
    assert event.summary == (
        "agent pc1 quarantined version 2: failed its start-and-connect check 3 times"
    )
    plain = Heartbeat(pc_id="pc1", agent_version="1", hostname="h", os_family="linux",
                      sent_at=NOW)  # fmt: skip
    assert quarantine_events(plain, NOW) == []
