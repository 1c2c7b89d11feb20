"""Dashboard events between backend replicas (SPEC §9): what changes through one replica
reaches a browser whose ``GET /api/events`` stream is served by another.

Out: the relay is a ``local_only`` subscriber of this process's hub
(:mod:`kanade.backend.messaging.live`), so it gets what this replica's API calls,
projectors, heartbeat flushes and rollout runner announce, already merged per topic; it
waits a moment for a burst to gather and publishes it as one message on
``kanade.dash.<origin>`` (core NATS: an invalidation lost while the broker is away costs a
refetch, nothing more). In: every replica subscribes to ``kanade.dash.*`` and hands what
other replicas sent to its own hub as *remote* events, which are never relayed again.
A message is bounded on both sides (topics, ids per topic, size).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Annotated, Any

import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from kanade.backend.messaging.live import MAX_IDS, Subscription, hub
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.worker import Worker

log = structlog.get_logger(__name__)

DEBOUNCE_S = 0.05
"""How long a burst of local events gathers before it is relayed as one message."""
MAX_TOPICS = 32
MAX_BYTES = 64 * 1024

Topic = Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")]
Key = Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")]
Value = list[Annotated[str, StringConstraints(max_length=256)]] | str | int | bool | None


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore")
    topic: Topic
    payload: dict[Key, Value] = Field(default_factory=dict, max_length=16)


class Relayed(BaseModel):
    """One relayed burst: which replica sent it, and its events (one per topic)."""

    model_config = ConfigDict(extra="ignore")
    origin: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,32}$")]
    events: list[Event] = Field(max_length=MAX_TOPICS)


def _bounded(payload: dict[str, Any]) -> dict[str, Any]:
    """A hub payload as the wire allows it: id lists over MAX_IDS become None ("many")."""
    return {k: (None if isinstance(v, list) and len(v) > MAX_IDS else v)
            for k, v in payload.items()}  # fmt: skip


class DashboardRelay(Worker):
    """One per broker connection: relays this replica's events out, others' in."""

    name = "dashboard-relay"

    def __init__(self, bus: Bus, *, origin: str | None = None) -> None:
        super().__init__(interval=0.0)
        self._bus = bus
        self.origin = origin or uuid.uuid4().hex[:16]
        self._local: contextlib.ExitStack | None = None
        self._events: Subscription | None = None
        self._inbound: NatsSubscription | None = None
        self.relayed = 0
        self.received = 0

    async def subscribe(self) -> None:
        """Listen to the other replicas (restored by nats-py after a reconnect)."""
        self._inbound = await self._bus.nc.subscribe(
            subjects.DASHBOARD_EVENTS_ALL, cb=self._on_msg
        )

    async def setup(self) -> None:
        self._local = contextlib.ExitStack()
        self._events = self._local.enter_context(hub.subscribe(local_only=True))

    async def teardown(self) -> None:
        if self._local is not None:
            self._local.close()
            self._local = None
        sub, self._inbound = self._inbound, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def step(self) -> None:
        events = self._events
        assert events is not None
        await events.wait()
        await asyncio.sleep(DEBOUNCE_S)
        taken = events.take()
        if not taken:
            return
        try:
            events_out = [Event(topic=t, payload=_bounded(p)) for t, p in taken]
            burst = Relayed(origin=self.origin, events=events_out)
        except ValidationError as exc:  # a topic or payload the wire does not carry
            log.warning("dashboard events not relayed", error=str(exc))
            return
        data = burst.model_dump_json().encode()
        if len(data) > MAX_BYTES:  # too many ids: say which topics changed, not which ids
            bare = Relayed(origin=self.origin, events=[Event(topic=t) for t, _ in taken])
            data = bare.model_dump_json().encode()
        with contextlib.suppress(Exception):  # broker away: a missed refresh, not a loss
            await self._bus.nc.publish(subjects.dashboard_events_subject(self.origin), data)
            self.relayed += 1

    async def _on_msg(self, msg: Msg) -> None:
        if msg.subject == subjects.dashboard_events_subject(self.origin):
            return  # our own
        if len(msg.data) > MAX_BYTES:
            log.warning("oversized dashboard events dropped", subject=msg.subject)
            return
        try:
            burst = Relayed.model_validate_json(msg.data)
        except ValidationError as exc:
            log.warning("bad dashboard events dropped", subject=msg.subject, error=str(exc))
            return
        self.received += 1
        for event in burst.events:
            hub.publish(event.topic, dict(event.payload), remote=True)
