"""The backend's live-output relay (kanade.backend.messaging.liveout): chunks are untrusted —
bounded, checked against their subject — and each watcher's queue is bounded, dropping its
oldest chunks rather than slowing anyone; an exec is subscribed while watched, announced to
the agents, and renewed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kanade.backend.errors import Unavailable
from kanade.backend.messaging import liveout
from kanade.backend.messaging.liveout import MAX_CHUNK_BYTES, LiveRelay, LiveWatcher
from kanade.core import subjects
from kanade.core.models.wire import LiveChunk, LiveWatch, decode, encode


class FakeSub:
    def __init__(self, nc: FakeNc, subject: str) -> None:
        self.nc, self.subject = nc, subject

    async def unsubscribe(self) -> None:
        self.nc.subs.remove(self.subject)


class FakeNc:
    def __init__(self) -> None:
        self.subs: list[str] = []
        self.published: list[tuple[str, bytes]] = []

    async def subscribe(self, subject: str, **_: Any) -> FakeSub:
        self.subs.append(subject)
        return FakeSub(self, subject)

    async def publish(self, subject: str, data: bytes) -> None:
        self.published.append((subject, data))


class FakeBus:
    def __init__(self) -> None:
        self.nc = FakeNc()


def _chunk(pc: str = "pc-a", exec_id: str = "e1", **kw: Any) -> bytes:
    return encode(LiveChunk(exec_id=exec_id, pc_id=pc, seq=kw.pop("seq", 0), **kw))


class Counts:
    def __init__(self) -> None:
        self.mismatch: list[str] = []
        self.outcomes: dict[str, int] = {}

    def outcome(self, outcome: str, n: int) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _relay(bus: FakeBus, counts: Counts, clock: Clock | None = None, **kw: Any) -> LiveRelay:
    return LiveRelay(
        lambda: bus,  # type: ignore[arg-type,return-value]
        on_identity_mismatch=counts.mismatch.append,
        on_outcome=counts.outcome,
        clock=clock or Clock(),
        **kw,
    )


async def test_a_watched_exec_is_subscribed_announced_and_let_go_a_lease_after() -> None:
    bus, counts, clock = FakeBus(), Counts(), Clock()
    relay = _relay(bus, counts, clock)
    async with relay.watch("e1") as one, relay.watch("e1", ["pc-a"]) as two:
        assert bus.nc.subs == [subjects.live_exec_subjects("e1")]  # once for both
        (subject, data), = bus.nc.published  # fmt: skip
        assert subject == subjects.LIVE_WATCH_SUBJECT
        assert decode(LiveWatch, data).exec_ids == ["e1"]
        relay.relay(subjects.live_subject("pc-a", "e1"), _chunk(stdout="a\n"))
        relay.relay(subjects.live_subject("pc-b", "e1"), _chunk("pc-b", stdout="b\n"))
        assert [c.stdout for c in one.take()[0]] == ["a\n", "b\n"]
        assert [c.stdout for c in two.take()[0]] == ["a\n"]  # narrowed to pc-a
        await relay.renew()
        assert len(bus.nc.published) == 2  # the lease renewed
    # nobody watches: still followed for a lease (a reload comes back to it), not renewed
    assert relay.watched() == [] and relay.followed() == ["e1"]
    clock.now = relay.lease_s - 1
    await relay.renew()
    assert len(bus.nc.published) == 2 and bus.nc.subs
    clock.now = relay.lease_s
    await relay.renew()
    assert bus.nc.subs == [] and relay.followed() == []


async def test_a_later_watcher_starts_with_what_came_before_it() -> None:
    bus, counts = FakeBus(), Counts()
    relay = _relay(bus, counts)
    async with relay.watch("e1"):
        for seq in range(3):
            relay.relay(subjects.live_subject("pc-a", "e1"), _chunk(seq=seq, stdout=f"{seq}\n"))
    # the first watcher is gone; the exec is still followed
    relay.relay(subjects.live_subject("pc-a", "e1"), _chunk(seq=3, stdout="3\n"))
    async with relay.watch("e1") as late:
        relay.relay(subjects.live_subject("pc-a", "e1"), _chunk(seq=4, stdout="4\n"))
        assert [c.seq for c in late.take()[0]] == [0, 1, 2, 3, 4]
    assert len(bus.nc.published) == 1  # subscribed and announced once


async def test_a_chunk_for_another_pc_or_exec_than_its_subject_is_refused_and_counted() -> None:
    bus, counts = FakeBus(), Counts()
    relay = _relay(bus, counts)
    async with relay.watch("e1") as watcher:
        relay.relay(subjects.live_subject("pc-a", "e1"), _chunk("pc-b", stdout="forged"))
        relay.relay(subjects.live_subject("pc-a", "e1"), _chunk("pc-a", "e2", stdout="forged"))
        relay.relay(subjects.live_subject("pc-a", "e1"), b"{not json")
        relay.relay(subjects.live_subject("pc-a", "e1"), b"x" * (MAX_CHUNK_BYTES + 1))
        relay.relay("kanade.live.pc-a.e1.extra", _chunk())
        too_long = {"exec_id": "e1", "pc_id": "pc-a", "seq": 0, "stdout": "x" * 20_000}
        relay.relay(subjects.live_subject("pc-a", "e1"), json.dumps(too_long).encode())
        assert watcher.take() == ([], 0)
    assert counts.mismatch == ["live", "live"]
    assert counts.outcomes == {"refused": 6}


def test_a_slow_watcher_loses_its_oldest_chunks_and_is_told_how_many() -> None:
    watcher = LiveWatcher("e1", None, max_chunks=3, max_bytes=1000)
    for seq in range(5):
        watcher.offer(LiveChunk(exec_id="e1", pc_id="pc-a", seq=seq), 10)
    chunks, dropped = watcher.take()
    assert [c.seq for c in chunks] == [2, 3, 4] and dropped == 2
    for seq in range(3):
        watcher.offer(LiveChunk(exec_id="e1", pc_id="pc-a", seq=seq), 600)  # over the bytes
    chunks, dropped = watcher.take()
    assert [c.seq for c in chunks] == [2] and dropped == 2
    assert watcher.take() == ([], 0)


async def test_no_broker_or_too_many_watchers_is_unavailable() -> None:
    bus, counts = FakeBus(), Counts()
    relay = _relay(bus, counts, max_watchers=1)
    async with relay.watch("e1"):
        with pytest.raises(Unavailable, match="already serves 1 live-output"):
            async with relay.watch("e2"):
                pass
    assert relay.followed() == ["e1"]

    def away() -> FakeBus:
        raise Unavailable("the broker is not connected yet")

    relay = LiveRelay(away)  # type: ignore[arg-type]
    with pytest.raises(Unavailable):
        async with relay.watch("e1"):
            pass
    assert relay.followed() == []
    await relay.renew()  # nothing to do, no error


async def test_a_new_connection_is_subscribed_again_on_renewal() -> None:
    bus, counts = FakeBus(), Counts()
    relay = _relay(bus, counts)
    async with relay.watch("e1"):
        old = bus.nc
        bus.nc = FakeNc()  # the link connected again: the old subscription is gone
        await relay.renew()
        assert bus.nc.subs == [subjects.live_exec_subjects("e1")]
        assert old.subs == [subjects.live_exec_subjects("e1")]


async def test_at_the_most_execs_followed_the_unwatched_are_let_go_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(liveout, "MAX_EXECS", 2)
    bus, counts = FakeBus(), Counts()
    relay = _relay(bus, counts)
    async with relay.watch("e1"):
        async with relay.watch("e2"):
            pass  # e2: followed, nobody watches
        async with relay.watch("e3"):
            assert relay.followed() == ["e1", "e3"]
            with pytest.raises(Unavailable, match="already follows 2 execs"):
                async with relay.watch("e4"):
                    pass
