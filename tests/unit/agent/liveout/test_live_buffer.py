"""One stream's held live output (kanade.agent.liveout.buffer): bounded, the newest kept,
every byte either taken in order or counted as elided at the right place."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kanade.agent.liveout.buffer import TailBuffer


def test_over_the_cap_the_oldest_bytes_are_dropped_and_counted() -> None:
    buf = TailBuffer(cap=8)
    buf.feed(b"hello ")
    buf.feed(b"world")
    assert len(buf) == 8
    assert buf.take(100) == (3, b"lo world")
    assert buf.take(100) == (0, b"")


def test_one_huge_write_keeps_its_tail() -> None:
    buf = TailBuffer(cap=4)
    buf.feed(b"ab")
    buf.feed(b"0123456789")
    assert buf.take(2) == (8, b"67")
    assert buf.take(2) == (0, b"89")


@settings(max_examples=300, deadline=None)
@given(
    cap=st.integers(1, 64),
    ops=st.lists(
        st.one_of(st.binary(min_size=0, max_size=100), st.integers(0, 80)), max_size=60
    ),
)
def test_every_byte_is_taken_in_order_or_counted(cap: int, ops: list[bytes | int]) -> None:
    buf = TailBuffer(cap)
    stream = b""
    pos = 0  # where, in everything fed, the next taken byte must come from
    for op in ops:
        if isinstance(op, bytes):
            buf.feed(op)
            stream += op
        else:
            elided, data = buf.take(op)
            pos += elided
            assert stream[pos : pos + len(data)] == data
            pos += len(data)
        assert len(buf) <= cap
        assert pos + buf.elided + len(buf) == len(stream)
