"""The scheduler lease against a real KV bucket: exclusive, renewed by compare-and-set,
taken over only after a full TTL of silence (judged on the contender's own monotonic
clock), given up by a holder that cannot renew, released on shutdown."""

from __future__ import annotations

import asyncio
import json

from nats.js.kv import KeyValue

from kanade.backend.catalog.dispatch_state import LEASE_KEY
from kanade.backend.workers.scheduler.lease import Lease
from kanade.bus import Bus
from kanade.core import subjects


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def lease(bus: Bus, name: str, clock: Clock, ttl: float = 10.0) -> Lease:
    async def kv() -> KeyValue:
        return await bus.kv(subjects.KV_DISPATCH)

    return Lease(kv, name, ttl_s=ttl, monotonic=clock)


async def holder_in_kv(bus: Bus) -> str:
    entry = await (await bus.kv(subjects.KV_DISPATCH)).get(LEASE_KEY)
    return str(json.loads(entry.value or b"{}")["holder"])


async def test_one_holder_renews_and_the_other_waits(bus: Bus) -> None:
    ca, cb = Clock(), Clock()
    a, b = lease(bus, "a", ca), lease(bus, "b", cb)
    assert await a.try_acquire()
    assert not await b.try_acquire()
    assert b.other_holder == "a"
    for _ in range(10):  # a renews every few seconds; b never sees a silent lease
        ca.t += 2.5
        cb.t += 2.5
        assert await a.renew()
        assert not await b.try_acquire()
    assert a.held and not b.held
    assert await holder_in_kv(bus) == "a"


async def test_a_silent_holder_is_taken_over_after_a_full_ttl(bus: Bus) -> None:
    ca, cb = Clock(), Clock()
    a, b = lease(bus, "a", ca), lease(bus, "b", cb)
    assert await a.try_acquire()
    assert not await b.try_acquire()  # b notes the revision and starts counting
    cb.t += 9.9
    assert not await b.try_acquire()  # not yet a full TTL of silence
    ca.t += 5.0
    assert not a.held  # a has not renewed for ttl/2: it stops scheduling by itself
    cb.t += 0.2
    assert await b.try_acquire()
    assert await holder_in_kv(bus) == "b"
    assert not await a.renew()  # the CAS fails: a learns it lost the lease
    assert not a.held


async def test_clock_skew_cannot_split_the_lease(bus: Bus) -> None:
    # b's clock runs far ahead (or its wall clock is wrong): only the *revision* staying
    # unchanged for a ttl of b's own time lets it take over, so a renewing holder is safe.
    ca, cb = Clock(), Clock()
    cb.t += 1_000_000
    a, b = lease(bus, "a", ca), lease(bus, "b", cb)
    assert await a.try_acquire()
    for _ in range(5):
        assert not await b.try_acquire()
        cb.t += 30  # b thinks a long time passed between polls
        ca.t += 2.5
        assert await a.renew()  # but a keeps writing new revisions
    assert not await b.try_acquire()


async def test_release_lets_a_standby_in_at_once(bus: Bus) -> None:
    ca, cb = Clock(), Clock()
    a, b = lease(bus, "a", ca), lease(bus, "b", cb)
    assert await a.try_acquire()
    assert not await b.try_acquire()
    await a.release()
    assert not a.held
    assert await b.try_acquire()  # the key is gone: create wins immediately
    assert await holder_in_kv(bus) == "b"


async def test_two_contenders_for_a_free_lease_one_wins(bus: Bus) -> None:
    clocks = [Clock() for _ in range(5)]
    leases = [lease(bus, f"c{i}", c) for i, c in enumerate(clocks)]
    won = await asyncio.gather(*(x.try_acquire() for x in leases))
    assert sum(won) == 1
    winner = leases[won.index(True)]
    assert await holder_in_kv(bus) == winner.holder
