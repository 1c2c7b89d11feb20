"""Command-consumer provisioning (SPEC §8.1): agents may not create consumers, since a
consumer's filter decides which commands it reads; they ask here and the backend creates
``agent-<pc>`` reading exactly the fleet-wide subjects, the pc's own and its KV groups'.

The pc is taken from the request *subject* — the broker lets only that agent's identity
publish on ``kanade.agent.<pc>.consumer`` — never from the payload, which is ignored.
Requests are answered in a queue group, so backend replicas share them.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from kanade.backend.catalog.groups import valid_groups_of
from kanade.bus.connection import Bus
from kanade.bus.consumers import add_or_widen_consumer, agent_command_consumer
from kanade.core import subjects
from kanade.core.ids import is_slug
from kanade.core.models.wire import ConsumerReply, encode

log = structlog.get_logger(__name__)

QUEUE: Final = "kanade-backend-provisioning"
"""One queue group for every replica: each request is answered once."""

MAX_CONCURRENT: Final = 16
"""Requests provisioned at once; the rest wait in the subscription's queue (a fleet
reconnecting after a broker restart asks all at once; the JetStream API would only
time out under thousands of parallel creations)."""

_PREFIX, _SUFFIX = subjects.consumer_request_subject("\0").split("\0")


def pc_of_request(subject: str) -> str | None:
    """The pc a request subject names, None when it is not a valid one."""
    if not (subject.startswith(_PREFIX) and subject.endswith(_SUFFIX)):
        return None
    pc = subject[len(_PREFIX) : len(subject) - len(_SUFFIX)]
    return pc if is_slug(pc) else None


class _PcTurn:
    """A pc's provisioning lock and how many requests hold or wait for it."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class ConsumerProvisioner:
    """Answers ``kanade.agent.*.consumer`` requests until :meth:`close`."""

    def __init__(self, *, max_concurrent: int = MAX_CONCURRENT) -> None:
        self._slots = asyncio.Semaphore(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub: Subscription | None = None
        self._bus: Bus | None = None
        # One provisioning per pc at a time: two at once (the agent's request after a
        # group change, and its retry when the re-created consumer's old pull is cut)
        # would each see the old filters and re-create it twice.
        self._per_pc: dict[str, _PcTurn] = {}
        self.provisioned = 0
        self.refused = 0

    async def subscribe(self, bus: Bus) -> None:
        """Start answering on ``bus`` (core NATS: nats-py restores it after a reconnect)."""
        await self.close()
        self._bus = bus
        self._sub = await bus.nc.subscribe(
            subjects.CONSUMER_REQUESTS_ALL, queue=QUEUE, cb=self._on_request
        )

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_request(self, msg: Msg) -> None:
        # Waiting for a slot here (not in a task) holds further requests in the
        # subscription's queue: bounded concurrency without an unbounded task set.
        await self._slots.acquire()
        task = asyncio.ensure_future(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _answer(self, msg: Msg) -> None:
        if not msg.reply:
            log.debug("consumer request without a reply subject ignored", subject=msg.subject)
            return
        try:
            reply = await self.provision(msg.subject)
        except Exception as exc:  # an answer, never a crash: the agent retries
            log.warning("consumer provisioning failed", subject=msg.subject, error=repr(exc))
            reply = ConsumerReply(ok=False, error=f"provisioning failed: {exc!r}")
        if not reply.ok:
            self.refused += 1
        with contextlib.suppress(Exception):
            await msg.respond(encode(reply))

    async def provision(self, subject: str) -> ConsumerReply:
        """Create or update the consumer of the pc ``subject`` names."""
        pc_id = pc_of_request(subject)
        if pc_id is None:
            return ConsumerReply(ok=False, error=f"{subject!r} is not a consumer request subject")
        turn = self._per_pc.setdefault(pc_id, _PcTurn())
        turn.users += 1
        try:
            async with turn.lock:
                return await self._provision(pc_id)
        finally:
            turn.users -= 1
            if not turn.users:
                del self._per_pc[pc_id]

    async def _provision(self, pc_id: str) -> ConsumerReply:
        bus = self._bus
        assert bus is not None, "subscribe() first"
        config = agent_command_consumer(pc_id, await valid_groups_of(bus, pc_id))
        # A pc that joined a group gets a fresh consumer, so the group's commands already
        # stored are delivered: those issued after it joined run, the agent ignores the
        # older ones (SPEC §3.2), and its ledger the replays of the rest.
        widened = await add_or_widen_consumer(bus.js, subjects.STREAM_COMMANDS, config)
        self.provisioned += 1
        log.debug(
            "command consumer provisioned",
            pc_id=pc_id,
            filters=config.filter_subjects,
            recreated=widened,
        )
        return ConsumerReply(ok=True, filters=list(config.filter_subjects or []))


__all__ = ["MAX_CONCURRENT", "QUEUE", "ConsumerProvisioner", "pc_of_request"]
