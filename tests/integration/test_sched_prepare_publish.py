"""Pipelined JetStream publishing (kanade.bus.publish.send_pipelined / settle), which the
scheduler uses to put a tick's commands, exec records, audits and ticks on the wire at
once, against a real nats-server: every message stored once, in order, a repeat dropped
by its Nats-Msg-Id, and a broker that does not answer reported within the deadline
instead of hanging the scheduler."""

from __future__ import annotations

import asyncio
import time

import pytest

from kanade.bus import Bus, EmbeddedBroker, publish
from kanade.bus.publish import Outgoing, send_pipelined, settle
from kanade.core import subjects


def audits(n: int, tag: str) -> list[Outgoing]:
    return [
        Outgoing(subjects.audit_subject("exec"), f"{tag}-{i}".encode(), f"{tag}:{i}")
        for i in range(n)
    ]


async def last_seq(bus: Bus) -> int:
    return int((await bus.js.stream_info(subjects.STREAM_AUDIT)).state.last_seq)


async def test_every_message_is_stored_once_in_the_order_sent(bus: Bus) -> None:
    before = await last_seq(bus)
    messages = audits(700, "a")  # more than one yield batch, fewer than the pending cap
    assert await settle(await send_pipelined(bus, messages)) == [None] * 700
    assert await last_seq(bus) == before + 700
    for seq in (before + 1, before + 350, before + 700):
        stored = await bus.js.get_msg(subjects.STREAM_AUDIT, seq)
        assert stored.data == messages[seq - before - 1].payload
    # Sent again (a retry, a second scheduler): acked as duplicates, nothing stored.
    again = await send_pipelined(bus, messages)
    assert await settle(again) == [None] * 700
    assert all(f.result().duplicate for f in again if not isinstance(f, BaseException))
    assert await last_seq(bus) == before + 700


async def test_a_broker_that_does_not_answer_is_reported_within_the_deadline(
    bus: Bus, nats_server: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await settle(await send_pipelined(bus, audits(3, "warm"))) == [None] * 3
    nats_server.stop()
    monkeypatch.setattr(publish, "PIPELINE_ACK_TIMEOUT_S", 0.5)
    # More than nats-py's own cap of unacked async publishes (4 000), past which it waits
    # for an ack without a deadline: the stall guard waits at most the ack timeout, then
    # fails the rest at once.
    n = 4_100
    t0 = time.monotonic()
    pending = await asyncio.wait_for(send_pipelined(bus, audits(n, "away")), 10)
    errors = await settle(pending, timeout=0.5)
    assert time.monotonic() - t0 < 10
    assert len(errors) == n and all(e is not None for e in errors)
    stalled = [e for e in errors[publish.PIPELINE_MAX_PENDING :] if isinstance(e, TimeoutError)]
    assert len(stalled) == n - publish.PIPELINE_MAX_PENDING
