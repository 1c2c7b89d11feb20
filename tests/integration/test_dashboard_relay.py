"""Dashboard events between backend replicas (kanade.backend.workers.dashboard_relay) through a
real broker: what one replica's hub announces reaches the other's as a remote event, a
remote event is never relayed again (no echo between replicas), and a message that breaks
the wire's bounds is dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kanade.backend.messaging.live import hub
from kanade.backend.workers.dashboard_relay import DashboardRelay, Relayed
from kanade.bus.connection import Bus
from kanade.core import subjects
from polling import eventually


@pytest.fixture
async def relays(bus: Bus) -> AsyncIterator[tuple[DashboardRelay, DashboardRelay]]:
    a, b = DashboardRelay(bus, origin="aaaa"), DashboardRelay(bus, origin="bbbb")
    for relay in (a, b):
        await relay.subscribe()
    tasks = [asyncio.create_task(r.run()) for r in (a, b)]
    await asyncio.sleep(0)  # both subscribed to the hub
    try:
        yield a, b
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_replicas_events_reach_the_other_and_never_echo(
    bus: Bus, relays: tuple[DashboardRelay, DashboardRelay]
) -> None:
    a, b = relays
    with hub.subscribe(local_only=True) as local:
        # One process, two relays: each relays the local event once and hears the other.
        hub.publish("jobs", {"job_ids": ["hello"]})
        await eventually(lambda: a.received == 1 and b.received == 1, "each heard the other")
        await bus.nc.flush()
        await asyncio.sleep(0.3)  # a remote event relayed again would show by now
        assert (a.relayed, b.relayed, a.received, b.received) == (1, 1, 1, 1)
        assert [t for t, _ in local.take()] == ["jobs"]  # the remote copies are not local


async def test_a_message_out_of_bounds_is_dropped(
    bus: Bus, relays: tuple[DashboardRelay, DashboardRelay]
) -> None:
    a, _ = relays
    with hub.subscribe() as sub:
        bad = [b"not json", b'{"origin": "cccc", "events": [{"topic": "Jobs!"}]}',
               Relayed(origin="cccc", events=[]).model_dump_json().encode()[:-1]]  # fmt: skip
        for data in bad:
            await bus.nc.publish(subjects.dashboard_events_subject("cccc"), data)
        good = b'{"origin": "cccc", "events": [{"topic": "agents", "payload": {"pc_ids": ["p"]}}]}'
        await bus.nc.publish(subjects.dashboard_events_subject("cccc"), good)
        await eventually(lambda: a.received == 1, "the good one heard")
        assert await sub.wait(timeout=2)
        assert sub.take() == [("agents", {"pc_ids": ["p"]})]
