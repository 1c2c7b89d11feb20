"""Heartbeats (core NATS) → the ``agents`` table, coalesced per pc and flushed in batches.

Heartbeats are telemetry, not records: only the newest per agent matters, so
between two flushes a pc that beat several times costs one row write. With
10 000 agents at a 30 s interval that is ~330 heartbeats/s folded into five
small batched UPSERTs per second.

A heartbeat is bounded at decode (:mod:`kanade.core.bounds`); one the database still
refuses is dropped and counted, alone: it must never hold back the rows of the other
agents (a single 2^64 field once made every later flush fail, and the fleet went stale).

A heartbeat that reports a quarantined agent version (self-update, SPEC §3.8) also records
an ``agent.quarantined`` notification event, in the same transaction (each version once).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from sqlalchemy.engine import Connection

from kanade.backend.messaging.live import hub
from kanade.backend.store import agents, notify_events
from kanade.backend.store.database import Database
from kanade.backend.store.failures import is_transient
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.instants import Clock, system_clock
from kanade.core.models.wire import Heartbeat, WireDecodeError, decode
from kanade.core.notify.events import Event, agent_quarantined
from kanade.worker import Worker

log = structlog.get_logger(__name__)

FLUSH_INTERVAL_S = 0.2
QUARANTINES_REPORTED = 20
"""Quarantined versions read from one heartbeat at most (the list is the agent's)."""
QUARANTINES_REMEMBERED = 10_000
"""Quarantine events this process recorded, remembered so a still-quarantined agent's
every heartbeat does not write again (the store would ignore it anyway)."""

_HB_PREFIX = subjects.heartbeat_subject("")


def quarantine_events(hb: Heartbeat, received_at: datetime) -> list[Event]:
    """An ``agent.quarantined`` event per version the heartbeat reports quarantined. The
    field arrives with agent self-update (SPEC §3.8); a heartbeat without it has none."""
    update = hb.update
    if update is None or not update.quarantined:
        return []
    return [
        agent_quarantined(pc_id=hb.pc_id, version=str(v), error=update.error, at=received_at)
        for v in update.quarantined[:QUARANTINES_REPORTED]
    ]


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
        "agent_update": hb.update.model_dump() if hb.update is not None else None,
        "disk_full": hb.disk_full,
        "disk_error": hb.disk_error,
        "disk_free_bytes": hb.disk_free_bytes,
        "held_messages": hb.held_messages,
        "local_config": hb.local_config,
        "static_groups": hb.static_groups,
        # The backend's clock: liveness must not depend on the agent's clock.
        "last_seen": received_at,
        "first_seen": received_at,
        # A clean stop's last heartbeat: offline from now on (any other one clears it).
        "stopped_at": received_at if hb.stopping else None,
    }


HEARTBEAT_QUEUE = "kanade-backend-heartbeats"
"""Every backend replica's heartbeat subscription is in this queue group."""


def _upsert_one(conn: Connection, *, row: dict[str, Any]) -> None:
    agents.upsert_agents(conn, [row])


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
        on_dropped: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__(interval=flush_interval_s)
        self._db = db
        self._on_identity_mismatch = on_identity_mismatch
        self._on_dropped = on_dropped
        self._clock = clock
        self._pending: dict[str, dict[str, Any]] = {}
        self._events: dict[str, Event] = {}
        self._recorded: dict[str, None] = {}  # insertion-ordered: the oldest is dropped first
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
            self._dropped("invalid")
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
        now = self._clock()
        self._pending[hb.pc_id] = heartbeat_row(hb, now)
        for event in quarantine_events(hb, now):
            if event.id not in self._recorded:
                self._events.setdefault(event.id, event)

    async def step(self) -> None:
        await self.flush()

    def _dropped(self, reason: str) -> None:
        if self._on_dropped is not None:
            self._on_dropped("heartbeat", reason)

    async def flush(self) -> None:
        rows = list(self._pending.values())
        events = list(self._events.values())
        self._pending = {}
        self._events = {}
        if not rows:
            return
        now = self._clock()

        def write(conn: Connection) -> None:
            agents.upsert_agents(conn, rows)
            if events:
                notify_events.record_events(conn, events, now)

        try:
            await self._db.write(write)
        except Exception as exc:
            if not is_transient(exc):
                await self._flush_one_by_one(rows)
                await self._record_events_alone(events, now)
                return
            log.error("heartbeat flush failed; keeping rows for the next flush", size=len(rows),
                      error=str(exc))
            self._keep(rows)
            for event in events:
                self._events.setdefault(event.id, event)
            return
        hub.publish("agents", {"pc_ids": [r["pc_id"] for r in rows]})
        self._recorded_now(events)

    def _recorded_now(self, events: list[Event]) -> None:
        for event in events:
            self._recorded[event.id] = None
        while len(self._recorded) > QUARANTINES_REMEMBERED:
            del self._recorded[next(iter(self._recorded))]

    async def _record_events_alone(self, events: list[Event], now: datetime) -> None:
        """After a refused batch: the notification events on their own (dropped if refused
        too, like the row that made the batch fail; a later heartbeat reports them again)."""
        if not events:
            return
        try:
            await self._db.write(lambda conn: notify_events.record_events(conn, events, now))
        except Exception as exc:
            log.error("notification events refused by the database; dropped", n=len(events),
                      error=str(exc))
            return
        self._recorded_now(events)

    def _keep(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:  # a newer heartbeat that arrived meanwhile wins
            self._pending.setdefault(row["pc_id"], row)

    async def _flush_one_by_one(self, rows: list[dict[str, Any]]) -> None:
        """A row the database refuses: isolate it; the others are written, it is dropped."""
        written: list[str] = []
        for row in rows:
            try:
                await self._db.write(functools.partial(_upsert_one, row=row))
            except Exception as exc:
                if is_transient(exc):
                    self._keep([row])
                    continue
                log.error("heartbeat refused by the database; dropped", pc_id=row["pc_id"],
                          error=str(exc))
                self._dropped("unwritable")
                continue
            written.append(str(row["pc_id"]))
        if written:
            hub.publish("agents", {"pc_ids": written})
