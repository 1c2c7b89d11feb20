"""Heartbeats (core NATS) → the ``agents`` table, coalesced per pc and flushed in batches.

Heartbeats are telemetry, not records: only the newest per agent matters, so
between two flushes a pc that beat several times costs one row write. With
10 000 agents at a 30 s interval that is ~330 heartbeats/s folded into five
small batched UPSERTs per second.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from kanade.backend.messaging.live import hub
from kanade.backend.store import agents
from kanade.backend.store.database import Database
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.instants import Clock, system_clock
from kanade.core.models.wire import Heartbeat, WireDecodeError, decode
from kanade.worker import Worker

log = structlog.get_logger(__name__)

FLUSH_INTERVAL_S = 0.2

_HB_PREFIX = subjects.heartbeat_subject("")


def heartbeat_row(hb: Heartbeat, received_at: datetime) -> dict[str, Any]:
    return {
        "pc_id": hb.pc_id,
        "hostname": hb.hostname,
        "agent_version": hb.agent_version,
        "os_family": hb.os_family,
        "os_version": hb.os_version,
        "boot_time": hb.boot_time,
        "cpu_percent": hb.cpu_percent,
        "rss_bytes": hb.rss_bytes,
        "groups": sorted(set(hb.groups)),
        "schedule_set_version": hb.schedule_set_version,
        "last_command_at": hb.last_command_at,
        "queue_length": hb.queue_length,
        "running": hb.running,
        "disk_full": hb.disk_full,
        "disk_error": hb.disk_error,
        "disk_free_bytes": hb.disk_free_bytes,
        "held_messages": hb.held_messages,
        # The backend's clock: liveness must not depend on the agent's clock.
        "last_seen": received_at,
        "first_seen": received_at,
        # A clean stop's last heartbeat: offline from now on (any other one clears it).
        "stopped_at": received_at if hb.stopping else None,
    }


HEARTBEAT_QUEUE = "kanade-backend-heartbeats"
"""Every backend replica's heartbeat subscription is in this queue group."""


class HeartbeatSink(Worker):
    """Subscribe to ``kanade.hb.*``; each step upserts the latest heartbeat of each pc
    that beat since the last one (a step with nothing pending touches nothing)."""

    name = "heartbeats"

    def __init__(
        self,
        db: Database,
        *,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        clock: Clock = system_clock,
        on_identity_mismatch: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(interval=flush_interval_s)
        self._db = db
        self._on_identity_mismatch = on_identity_mismatch
        self._clock = clock
        self._pending: dict[str, dict[str, Any]] = {}
        self._sub: Subscription | None = None

    async def subscribe(self, bus: Bus) -> None:
        # Core-NATS subscriptions are restored by nats-py after a reconnect. A queue group:
        # backend replicas (SPEC §9) share the heartbeats, each written by one of them.
        self._sub = await bus.nc.subscribe(
            subjects.HEARTBEAT_ALL,
            queue=HEARTBEAT_QUEUE,
            cb=self._on_msg,
            pending_msgs_limit=200_000,
        )

    async def unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        try:
            hb = decode(Heartbeat, msg.data)
        except WireDecodeError as exc:
            log.warning("bad heartbeat dropped", subject=msg.subject, error=str(exc))
            return
        if msg.subject != _HB_PREFIX + hb.pc_id:
            # With broker auth an agent may publish only on its own subject; a
            # payload claiming another pc is not trusted (SPEC §8.1).
            log.warning(
                "heartbeat pc_id does not match subject", subject=msg.subject, pc_id=hb.pc_id
            )
            if self._on_identity_mismatch is not None:
                self._on_identity_mismatch("heartbeat")
            return
        # No wake-up: heartbeats gather until the next step, one write per interval.
        self._pending[hb.pc_id] = heartbeat_row(hb, self._clock())

    async def step(self) -> None:
        await self.flush()

    async def flush(self) -> None:
        rows = list(self._pending.values())
        self._pending = {}
        if not rows:
            return
        try:
            await self._db.write(lambda conn: agents.upsert_agents(conn, rows))
            hub.publish("agents", {"pc_ids": [r["pc_id"] for r in rows]})
        except Exception:
            log.exception("heartbeat flush failed; keeping rows for the next flush", size=len(rows))
            for row in rows:  # a newer heartbeat that arrived meanwhile wins
                self._pending.setdefault(row["pc_id"], row)
