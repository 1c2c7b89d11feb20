"""Live output at the agent (kanade.agent.liveout.publisher): only watched execs, within the
cap, coalesced, never waiting on the script; what the cap drops is counted where it was."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kanade.agent.liveout.publisher import (
    LINGER_S,
    MAX_MSG_BYTES,
    TAIL_BYTES,
    LiveOutput,
    LiveTap,
)
from kanade.core import subjects
from kanade.core.models.wire import LiveChunk, decode


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _never(subject: str, data: bytes) -> None:
    raise AssertionError("step() tests publish nothing themselves")


def _no_sender(coro: Coroutine[Any, Any, None]) -> None:
    coro.close()  # these tests drive step() themselves


def _live(clock: Clock, bytes_per_s: int = 1000, msgs_per_s: float = 10) -> LiveOutput:
    return LiveOutput(
        "pc-1", _never, bytes_per_s=bytes_per_s, msgs_per_s=msgs_per_s, clock=clock,
        spawn=_no_sender,
    )  # fmt: skip


def _chunks(messages: list[tuple[str, bytes]]) -> list[LiveChunk]:
    for subject, _ in messages:
        assert subject == subjects.live_subject("pc-1", "e1")
    return [decode(LiveChunk, data) for _, data in messages]


def _tap(live: LiveOutput, exec_id: str = "e1") -> LiveTap:
    tap = live.open(exec_id)
    assert tap is not None
    return tap


def test_nothing_is_sent_for_an_exec_nobody_watches() -> None:
    clock = Clock()
    live = _live(clock)
    tap = _tap(live)
    tap.feed("stdout", b"hello\n")
    assert live.step(clock()) == ([], None)


def test_a_watch_that_begins_late_sends_the_newest_output_and_says_what_came_before() -> None:
    clock = Clock()
    live = _live(clock, bytes_per_s=10 * TAIL_BYTES)
    tap = _tap(live)
    tap.feed("stdout", b"x" * 1000 + b"y" * TAIL_BYTES)
    live.watch(["e1"], 30)
    sent: list[LiveChunk] = []
    while True:
        messages, wait = live.step(clock())
        sent += _chunks(messages)
        if wait is None:
            break
        clock.now += wait
    assert sent[0].seq == 0 and sent[0].stdout_elided == 1000
    assert "".join(c.stdout for c in sent) == "y" * TAIL_BYTES
    assert all(len(c.stdout) <= MAX_MSG_BYTES for c in sent)
    assert not any(c.final for c in sent)  # still running


def test_the_last_message_is_final_and_the_tap_is_forgotten() -> None:
    clock = Clock()
    live = _live(clock)
    live.watch(["e1"], 30)
    tap = _tap(live)
    tap.feed("stdout", b"out\n")
    tap.feed("stderr", b"err\n")
    tap.close()
    messages, wait = live.step(clock())
    (chunk,) = _chunks(messages)
    assert (chunk.stdout, chunk.stderr, chunk.final, chunk.seq) == ("out\n", "err\n", True, 0)
    assert wait is None
    assert live.step(clock()) == ([], None)


def test_a_finished_run_nobody_watches_is_dropped_at_once() -> None:
    clock = Clock()
    live = _live(clock)
    tap = _tap(live)
    tap.feed("stdout", b"x")
    tap.close()
    live.watch(["e1"], 30)
    assert live.step(clock()) == ([], None)


def test_a_lease_that_runs_out_stops_the_output() -> None:
    clock = Clock()
    live = _live(clock, bytes_per_s=10, msgs_per_s=10)
    live.watch(["e1"], 5)
    tap = _tap(live)
    tap.feed("stdout", b"x" * 100)
    messages, wait = live.step(clock())
    assert len(messages) == 1 and wait is not None
    clock.now = 6.0
    assert live.step(clock()) == ([], None)
    assert not live.watching("e1", clock())


def test_a_character_cut_by_a_gap_is_part_of_the_gap() -> None:
    clock = Clock()
    live = _live(clock, bytes_per_s=10 * TAIL_BYTES)
    tap = _tap(live)
    # "é" is 2 bytes: one more byte than fits leaves its second byte at the head
    tap.feed("stdout", b"\xc3\xa9" + b"a" * (TAIL_BYTES - 1))
    live.watch(["e1"], 30)
    messages, _ = live.step(clock())
    chunk = _chunks(messages)[0]
    assert chunk.stdout_elided == 2
    assert chunk.stdout.startswith("a") and "\ufffd" not in chunk.stdout


def test_a_character_split_between_two_messages_arrives_whole() -> None:
    clock = Clock()
    live = _live(clock, bytes_per_s=3, msgs_per_s=10)
    live.watch(["e1"], 30)
    tap = _tap(live)
    tap.feed("stdout", "aé€".encode())  # 1 + 2 + 3 bytes, 3 bytes a message
    tap.close()
    text = ""
    for _ in range(20):
        messages, wait = live.step(clock())
        text += "".join(c.stdout for c in _chunks(messages))
        if wait is None:
            break
        clock.now += wait
    assert text == "aé€"


def test_off_sends_nothing() -> None:
    clock = Clock()
    live = _live(clock)
    live.retune(0, 10)
    assert live.open("e1") is None
    live.retune(100, 10)
    assert live.open("e1") is not None


def test_an_exec_id_that_is_not_one_subject_token_gets_no_tap() -> None:
    assert _live(Clock()).open("a.b") is None


@settings(max_examples=80, deadline=None)
@given(
    rate=st.integers(500, 50_000),
    msgs=st.floats(1, 20),
    ops=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["stdout", "stderr"]), st.integers(1, 20_000)),
            st.floats(0.001, 1.5),
        ),
        max_size=40,
    ),
)
def test_within_the_cap_in_order_every_byte_sent_or_counted(
    rate: int, msgs: float, ops: list[tuple[str, int] | float]
) -> None:
    """Whatever a script writes and whenever: published bytes and messages stay within the
    rate plus one second's burst; each stream's text arrives in order, with the bytes the
    cap dropped counted exactly where they were; seq has no gap; the run ends ``final``."""
    clock = Clock()
    live = _live(clock, bytes_per_s=rate, msgs_per_s=msgs)
    live.watch(["e1"], 1e6)
    tap = _tap(live)
    written = {"stdout": "", "stderr": ""}
    sent: list[LiveChunk] = []
    counter = 0
    for op in ops:
        if isinstance(op, tuple):
            stream, n = op
            text = "".join(chr(ord("a") + (counter + i) % 26) for i in range(n))
            counter += n
            tap.feed(stream, text.encode())
            written[stream] += text
        else:
            clock.now += op
        sent += _chunks(live.step(clock())[0])
    tap.close()
    for _ in range(100_000):  # the tail held (64 KiB at most) drains in a few thousand
        messages, wait = live.step(clock())
        sent += _chunks(messages)
        if wait is None:
            break
        clock.now += wait
    total = sum(len(c.stdout) + len(c.stderr) for c in sent)
    assert total <= rate * clock.now + rate + 1e-6
    assert len(sent) <= msgs * clock.now + max(1.0, msgs) + 1e-6
    assert [c.seq for c in sent] == list(range(len(sent)))
    assert sent[-1].final and not any(c.final for c in sent[:-1])
    for stream in ("stdout", "stderr"):
        pos = 0
        for c in sent:
            pos += getattr(c, f"{stream}_elided")
            text = getattr(c, stream)
            assert written[stream][pos : pos + len(text)] == text
            pos += len(text)
        assert pos == len(written[stream])


async def test_a_chatty_script_is_never_waited_on_and_the_sender_stays_within_the_cap() -> None:
    published: list[bytes] = []

    async def publish(subject: str, data: bytes) -> None:
        published.append(data)

    live = LiveOutput("pc-1", publish, bytes_per_s=20_000, msgs_per_s=20)
    live.watch(["e1"], 30)
    tap = _tap(live)
    t0 = time.monotonic()
    for _ in range(2000):  # 20 MB, written far faster than 20 kB/s
        tap.feed("stdout", b"y\n" * 5000)
    assert time.monotonic() - t0 < 2.0  # feeding never waits for the sender
    tap.close()
    for _ in range(200):  # the newest 32 KiB drain in about 1.6 s
        if live._task is not None and live._task.done():
            break
        await asyncio.sleep(LINGER_S)
    took = time.monotonic() - t0
    chunks = [decode(LiveChunk, d) for d in published]
    assert chunks and chunks[-1].final
    assert chunks[0].stdout_elided == 20_000_000 - TAIL_BYTES  # only the newest were kept
    assert sum(len(c.stdout) for c in chunks) == TAIL_BYTES
    assert sum(len(c.stdout) for c in chunks) <= 20_000 * took + 20_000
    assert len(chunks) <= 20 * took + 20
