"""The shape every projector shares: one durable consumer, one batch per worker step.

A batch is written in ONE transaction and acked only after the commit. The database
failing (transient) naks the batch for redelivery, never losing it; a row the database
refuses is isolated and skipped, so poison never blocks the stream. While one batch
commits on the writer thread, the next one arrives and decodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import structlog
from nats.aio.msg import Msg

from kanade.backend.messaging.consumers import (
    BatchSource,
    ConsumerSpec,
    ack_all,
    ensure_consumer,
    nak_all,
)
from kanade.backend.messaging.live import hub
from kanade.backend.store.database import Database
from kanade.backend.store.failures import is_transient
from kanade.bus.connection import Bus
from kanade.bus.pull import published_at
from kanade.core.instants import Clock, system_clock
from kanade.worker import Worker

log = structlog.get_logger(__name__)

# Redelivery delay after a failed commit: long enough not to spin on a broken DB.
NAK_DELAY_S = 2.0
# How long a stopping projector waits for the commit of its last batch.
SETTLE_ON_STOP_S = 10.0

OnProjected = Callable[[str, int], None]
OnDropped = Callable[[str, str], None]
"""(kind, reason): a message dropped — ``invalid`` (it does not decode: a field out of
bounds, the wrong type, not JSON) or ``unwritable`` (the database refused its row)."""


def recorded_at(msg: Msg) -> datetime:
    """The stream's publish time of ``msg`` (not our clock: replays must reproduce it)."""
    return published_at(msg)


@dataclass(frozen=True)
class Item:
    """One decoded message: the row it writes, and which kind of write."""

    msg: Msg
    row: dict[str, Any]
    started: bool = False
    status_only: bool = False  # an exec status record, not a whole row


@dataclass
class Decoded:
    """A batch decoded: rows to write, poison to ack, and forgeries to ack and count."""

    items: list[Item] = field(default_factory=list)
    poison: list[Msg] = field(default_factory=list)
    forged: list[tuple[str, Msg]] = field(default_factory=list)
    """(kind, message) whose payload names another pc than its subject (SPEC §8.1)."""


Writer = Callable[..., None]  # (conn, items, now)
Decoder = Callable[[list[Msg]], Decoded]
OnIdentityMismatch = Callable[[str], None]


class ProjectionWorker(Worker):
    """Consume ``spec`` in batches; subclasses say which consumer, and how a batch is written."""

    spec: ClassVar[ConsumerSpec]

    def __init__(
        self,
        bus: Bus,
        db: Database,
        *,
        batch_max: int = 500,
        clock: Clock = system_clock,
        on_projected: OnProjected | None = None,
        on_identity_mismatch: OnIdentityMismatch | None = None,
        on_dropped: OnDropped | None = None,
    ) -> None:
        # A step waits for its batch, and asks for the next one at once.
        super().__init__(interval=0.0)
        self.name = self.spec.durable
        self._bus = bus
        self._db = db
        self._clock = clock
        self._on_projected = on_projected
        self._on_identity_mismatch = on_identity_mismatch
        self._on_dropped = on_dropped
        self._source = BatchSource(bus, self.spec, batch_max=batch_max)

    async def prepare(self, *, reset: bool) -> None:
        """Create the durable consumer (``reset``: replay from the start, for a wiped DB)."""
        await ensure_consumer(self._bus.js, self.spec, reset=reset)

    async def step(self) -> bool:
        batch = await self._source.next_batch()
        try:
            await self.handle(batch)
        except BaseException:
            await self._source.close()  # as a fresh start: unacked messages come again
            raise
        return True

    async def teardown(self) -> None:
        await self._source.close()

    @abstractmethod
    async def handle(self, msgs: list[Msg]) -> None:
        """Decode, write and ack one batch."""

    def invalidates(self, kind: str, items: list[Item]) -> tuple[str, dict[str, Any]]:
        """The dashboard topic (and payload) committed ``items`` change."""
        return kind, {"exec_ids": [i.row["exec_id"] for i in items]}

    def _count(self, kind: str, n: int) -> None:
        if self._on_projected is not None:
            self._on_projected(kind, n)

    def _dropped(self, kind: str, reason: str, n: int = 1) -> None:
        if self._on_dropped is not None:
            for _ in range(n):
                self._on_dropped(kind, reason)

    async def commit(self, kind: str, items: list[Item], write: Writer) -> None:
        """Write ``items`` in one transaction, then ack them; never lose, never block.

        * the database failing (transient): nak the whole batch for redelivery;
        * a row the database refuses (e.g. an integer beyond 64 bits): the batch is
          retried one message per transaction so the good ones still land, and the
          refused one is logged and acked like any other poison message.
        """
        if not items:
            return
        now = self._clock()
        try:
            await self._db.write(lambda conn: write(conn, items, now))
        except Exception as exc:
            if is_transient(exc):
                log.error(
                    "batch not committed; redelivering", kind=kind, size=len(items), error=str(exc)
                )
                await nak_all([i.msg for i in items], NAK_DELAY_S)
                return
            log.warning("batch refused; isolating the bad message", kind=kind, error=str(exc))
            await self._commit_one_by_one(kind, items, write, now)
            return
        await ack_all([i.msg for i in items])
        self._count(kind, len(items))
        hub.publish(*self.invalidates(kind, items))

    async def _commit_one_by_one(
        self, kind: str, items: list[Item], write: Writer, now: datetime
    ) -> None:
        for item in items:
            try:
                await self._db.write(functools.partial(write, items=[item], now=now))
            except Exception as exc:
                if is_transient(exc):
                    await nak_all([item.msg], NAK_DELAY_S)
                    continue
                log.error(
                    "message refused by the database; skipped",
                    kind=kind,
                    subject=item.msg.subject,
                    error=str(exc),
                )
                await ack_all([item.msg])
                self._dropped(kind, "unwritable")
                continue
            await ack_all([item.msg])
            self._count(kind, 1)
            hub.publish(*self.invalidates(kind, [item]))


class ItemProjector(ProjectionWorker):
    """A projector whose batch decodes into :class:`Item` rows written by one function:
    poison and forgeries are acked at once (and forgeries counted), the rest goes through
    :meth:`ProjectionWorker.commit`."""

    kind: ClassVar[str]
    decode: ClassVar[Decoder]
    write: ClassVar[Writer]

    _in_flight: asyncio.Future[None] | None = None

    async def handle(self, msgs: list[Msg]) -> None:
        """Decode ``msgs`` while the previous batch commits, then hand them to the writer
        and return: the next batch arrives and decodes while this one commits (one batch
        in flight; each is acked after its own commit)."""
        decoded = type(self).decode(msgs)
        await self.settle()
        await ack_all([*decoded.poison, *(msg for _, msg in decoded.forged)])
        self._dropped(self.kind, "invalid", len(decoded.poison))
        if self._on_identity_mismatch is not None:
            for kind, _ in decoded.forged:
                self._on_identity_mismatch(kind)
        if decoded.items:
            self._in_flight = asyncio.ensure_future(
                self.commit(self.kind, decoded.items, type(self).write)
            )

    async def settle(self) -> None:
        """Wait until the batch in flight is committed and acked (or naked)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            await in_flight

    async def teardown(self) -> None:
        # A stopping worker lets its last batch commit and ack (bounded: a database that
        # hangs must not hold the shutdown; an unacked batch is redelivered, idempotently).
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(in_flight, SETTLE_ON_STOP_S)
        await super().teardown()
