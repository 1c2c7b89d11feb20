"""In-process event hub: small *invalidation* events for the dashboard (SPEC §6).

Writers (the projector after each committed batch, the heartbeat flusher, …)
call :func:`EventHub.publish` with a topic and a small payload, e.g.
``hub.publish("results", {"exec_ids": [...]})``. Each subscriber (one per open
``GET /api/events`` stream) holds at most ONE pending entry per topic: new
payloads are merged into it (lists are unioned), so a burst of 10 000 results
becomes one event per topic per debounce interval, never a backlog. A list that
grows past ``max_ids`` collapses to ``None``, meaning "many changed: refetch".

Events carry no data a page shows, only what changed: the page refetches it
through the ordinary API (which applies auth), so the stream can never leak or
contradict what the API says.

Publishing never blocks and never raises: it is called on hot paths.

Backend replicas (SPEC §9) relay their events to each other over the bus
(:mod:`kanade.backend.workers.dashboard_relay`): a change made through replica A — an API
call, a batch A projected — reaches dashboards connected to replica B. Events that came
from another replica are marked ``remote`` and never relayed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import structlog

log = structlog.get_logger(__name__)

MAX_IDS = 200
"""A merged id list longer than this becomes ``None`` ("many changed")."""

Payload = dict[str, Any]


def merge(old: Payload | None, new: Payload, max_ids: int = MAX_IDS) -> Payload:
    """Fold ``new`` into ``old``: lists are unioned (order kept, capped), scalars: last wins.

    A key that is ``None`` on either side stays ``None`` ("everything of this kind").
    """
    if old is None:
        old = {}
    out = dict(old)
    for key, value in new.items():
        if isinstance(value, list | tuple | set | frozenset):
            prev = out.get(key, [])
            if key in out and prev is None:
                continue
            merged = list(dict.fromkeys([*(prev or []), *value]))
            out[key] = None if len(merged) > max_ids else merged
        else:
            out[key] = value
    return out


class Subscription:
    """One subscriber's pending events (one merged payload per topic)."""

    def __init__(
        self, hub: EventHub, loop: asyncio.AbstractEventLoop, *, local_only: bool = False
    ) -> None:
        self._hub = hub
        self._loop = loop
        self.local_only = local_only
        self._pending: dict[str, Payload] = {}
        self._wake = asyncio.Event()
        self.dropped = False

    def _offer(self, topic: str, payload: Payload) -> None:
        # Called with the hub lock held, from any thread.
        self._pending[topic] = merge(self._pending.get(topic), payload, self._hub.max_ids)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._wake.set)

    def take(self) -> list[tuple[str, Payload]]:
        """Every pending event, oldest topic first; empties the subscription."""
        with self._hub.lock:
            events, self._pending = list(self._pending.items()), {}
            self._wake.clear()
        return events

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until something is pending (True) or ``timeout`` passes (False)."""
        if self._pending:
            return True
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return False
        return True


class EventHub:
    """Fan-out of invalidation events to every open dashboard stream."""

    def __init__(self, max_ids: int = MAX_IDS) -> None:
        self.max_ids = max_ids
        self.lock = threading.Lock()
        self._subs: set[Subscription] = set()
        self.published = 0

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, topic: str, payload: Payload | None = None, *, remote: bool = False) -> None:
        """Tell every subscriber that ``topic`` changed (``remote``: another replica says
        so; not offered to ``local_only`` subscribers). Never blocks, never raises."""
        try:
            with self.lock:
                self.published += 1
                for sub in self._subs:
                    if not (remote and sub.local_only):
                        sub._offer(topic, payload or {})
        except Exception:  # a dashboard must never break the projector
            log.exception("event publish failed", topic=topic)

    @contextlib.contextmanager
    def subscribe(self, *, local_only: bool = False) -> Iterator[Subscription]:
        """A subscription (``local_only``: events of this process only, for the relay)."""
        sub = Subscription(self, asyncio.get_running_loop(), local_only=local_only)
        with self.lock:
            self._subs.add(sub)
        try:
            yield sub
        finally:
            with self.lock:
                self._subs.discard(sub)


hub = EventHub()
"""The process-wide hub: writers import it and publish; ``GET /api/events`` subscribes."""


# A successful mutating API call changes what these dashboard topics show. One table,
# applied centrally after every such call, so no route has to remember to announce
# itself (projector, heartbeats and the rollout runner publish their own topics).
_TOPICS_BY_PREFIX: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("/api/schedules", ("schedules",)),
    ("/api/freeze", ("schedules", "freeze")),
    ("/api/jobs", ("jobs", "revocations")),
    ("/api/config", ("agents",)),
    ("/api/groups", ("agents",)),
    ("/api/executions", ("execs",)),
    ("/api/exec", ("execs",)),
    ("/api/run", ("execs",)),
    ("/api/rollouts", ("rollouts", "execs")),
    ("/api/approvals", ("execs",)),
    # enrol tokens, revoke (and ping, which brings a fresh heartbeat)
    ("/api/agents", ("enrolment", "agents")),
    ("/api/enroll", ("enrolment", "agents")),
    ("/api/notify", ("notify",)),
)


def topics_for(path: str) -> tuple[str, ...]:
    """Dashboard topics a successful mutating request on ``path`` invalidates."""
    for prefix, topics in _TOPICS_BY_PREFIX:
        if path == prefix or path.startswith(prefix + "/"):
            return (*topics, "audit")
    return ("audit",)

