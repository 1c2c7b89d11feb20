"""The scheduler lease (SPEC §9): exactly one backend process runs the central scheduler.

One KV key (``kanade_dispatch`` / ``scheduler.lease``) written only by compare-and-set.
Acquire, renew, lose, and why a stale leader cannot double-fire: docs/scheduler.md, "The
lease".
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog
from nats.js.errors import APIError
from nats.js.kv import KeyValue

from kanade.backend.catalog.dispatch_state import LEASE_KEY
from kanade.bus.kvcas import is_wrong_last_sequence, read
from kanade.core.instants import Clock, system_clock
from kanade.core.models.schedstate import LeaseRecord

log = structlog.get_logger(__name__)


class Lease:
    def __init__(
        self,
        kv: Callable[[], Awaitable[KeyValue]],
        holder: str,
        *,
        ttl_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
        key: str = LEASE_KEY,
        clock: Clock = system_clock,
    ) -> None:
        self._kv = kv
        self.holder = holder
        self.ttl_s = ttl_s
        self._mono = monotonic
        self._clock = clock  # only for the stored timestamps people read; never compared
        self._key = key
        self._revision: int | None = None  # ours while held
        self._renewed: float | None = None  # monotonic time of the last good write
        self._acquired_at: datetime | None = None
        self._seen: tuple[int, float] | None = None  # (revision, first seen) of another holder
        self.other_holder: str | None = None

    @property
    def renew_interval_s(self) -> float:
        return self.ttl_s / 4

    @property
    def held(self) -> bool:
        """Held and renewed recently enough that no contender can have taken over."""
        return (
            self._revision is not None
            and self._renewed is not None
            and self._mono() - self._renewed < self.ttl_s / 2
        )

    def _value(self) -> bytes:
        now = self._clock()
        if self._acquired_at is None:
            self._acquired_at = now
        return LeaseRecord(
            holder=self.holder, acquired_at=self._acquired_at, renewed_at=now, ttl_s=self.ttl_s
        ).encode()

    def _won(self, revision: int) -> None:
        self._revision = revision
        self._renewed = self._mono()
        self._seen = None
        self.other_holder = None

    def _lose(self) -> None:
        self._revision = None
        self._renewed = None
        self._acquired_at = None

    async def _read(self, kv: KeyValue) -> tuple[int | None, LeaseRecord]:
        """The key's revision (None: nobody holds it) and who holds it."""
        current = await read(kv, self._key)
        return current.revision, LeaseRecord.decode(current.value)

    async def try_acquire(self) -> bool:
        """One attempt; True when we hold the lease afterwards."""
        if self.held:
            return await self.renew()
        kv = await self._kv()
        revision, record = await self._read(kv)
        if revision is None:
            self._acquired_at = None
            try:
                self._won(await kv.create(self._key, self._value()))
            except APIError as exc:  # KeyWrongLastSequenceError is one
                if is_wrong_last_sequence(exc):
                    return False
                raise
            log.info("scheduler lease acquired", holder=self.holder)
            return True
        holder = record.holder
        if holder == self.holder:  # ours (a renew whose ack was lost): adopt it
            self._won(revision)
            return True
        now = self._mono()
        if self._seen is None or self._seen[0] != revision:
            self._seen = (revision, now)
            self.other_holder = holder
            return False
        if now - self._seen[1] < self.ttl_s:
            return False
        self._acquired_at = None
        try:
            self._won(await kv.update(self._key, self._value(), last=revision))
        except APIError as exc:  # KeyWrongLastSequenceError is one
            if is_wrong_last_sequence(exc):
                return False
            raise
        log.warning(
            "scheduler lease taken over: the holder stopped renewing",
            holder=self.holder,
            previous=holder,
            silent_s=round(now - self._seen[1] if self._seen else self.ttl_s, 1),
        )
        return True

    async def renew(self) -> bool:
        """Extend a held lease; False (and stepped down) when somebody else holds it."""
        if self._revision is None:
            return False
        kv = await self._kv()
        try:
            self._won(await kv.update(self._key, self._value(), last=self._revision))
            return True
        except APIError as exc:  # KeyWrongLastSequenceError is one
            if not is_wrong_last_sequence(exc):
                raise
            revision, record = await self._read(kv)
            if revision is not None and record.holder == self.holder:
                self._won(revision)  # our previous write landed; its ack was lost
                return True
            log.warning("scheduler lease lost to another holder", holder=self.holder)
            self._lose()
            return False

    async def release(self) -> None:
        if self._revision is None:
            return
        revision = self._revision
        self._lose()
        kv = await self._kv()
        try:
            await kv.delete(self._key, last=revision)
        except Exception:
            return  # somebody else holds it now (or the broker is away): it will expire
        log.info("scheduler lease released", holder=self.holder)
