"""The live-output cap (kanade.agent.liveout.budget): over any stretch of time an agent
grants no more than its rate plus one second's burst, in bytes and in messages."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kanade.agent.liveout.budget import MIN_INTERVAL_S, Budget, TokenBucket


def test_a_bucket_starts_full_and_refills_at_its_rate() -> None:
    b = TokenBucket(rate=10, burst=20, now=0.0)
    assert b.available(0.0) == 20
    b.spend(20, 0.0)
    assert b.available(0.5) == 5
    assert b.wait_s(10, 0.5) == 0.5
    assert b.available(100.0) == 20  # never above the burst


def test_a_grant_needs_a_message_and_a_byte() -> None:
    budget = Budget(bytes_per_s=100, msgs_per_s=2, now=0.0)
    assert budget.grant(150, 0.0) == 100  # one second's burst of bytes
    assert budget.grant(10, 0.0) is None  # bytes gone
    assert budget.grant(0, 0.0) == 0  # a message with no text (the last one) still may go
    assert budget.grant(0, 0.0) is None  # both messages of the burst spent
    assert budget.wait_s(10, 0.0) == 0.5
    assert budget.grant(10, 0.5) == 10


def test_the_wait_is_never_a_busy_loop() -> None:
    budget = Budget(bytes_per_s=1000, msgs_per_s=1000, now=0.0)
    assert budget.wait_s(1, 0.0) == MIN_INTERVAL_S


def test_retuning_keeps_no_more_than_the_new_burst() -> None:
    budget = Budget(bytes_per_s=1000, msgs_per_s=10, now=0.0)
    budget.retune(10, 1, 0.0)
    assert budget.grant(1000, 0.0) == 10
    assert budget.grant(1, 0.0) is None


@settings(max_examples=300, deadline=None)
@given(
    rate=st.integers(1, 100_000),
    msgs=st.floats(0.5, 50),
    steps=st.lists(
        st.tuples(st.floats(0, 2), st.integers(0, 200_000)), min_size=1, max_size=60
    ),
)
def test_never_more_than_the_rate_plus_one_burst(
    rate: int, msgs: float, steps: list[tuple[float, int]]
) -> None:
    budget = Budget(bytes_per_s=rate, msgs_per_s=msgs, now=0.0)
    now = 0.0
    granted_bytes = granted_msgs = 0
    for advance, want in steps:
        now += advance
        n = budget.grant(want, now)
        if n is not None:
            assert 0 <= n <= want
            granted_bytes += n
            granted_msgs += 1
        assert granted_bytes <= rate * now + rate + 1e-6
        assert granted_msgs <= msgs * now + max(1.0, msgs) + 1e-6
