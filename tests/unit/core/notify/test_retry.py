"""The retry schedule (kanade.core.notify.retry): exponential, capped, bounded attempts."""

from __future__ import annotations

from datetime import UTC, datetime

from kanade.core.notify.retry import RetryPolicy, parse_retry_after

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_backoff_doubles_up_to_the_cap() -> None:
    p = RetryPolicy(base_s=5, cap_s=60, max_attempts=6)
    assert [p.delay(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert p.delay(10_000) == 60  # no overflow
    assert not p.exhausted(5) and p.exhausted(6)


def test_a_longer_retry_after_is_honoured_up_to_the_cap() -> None:
    p = RetryPolicy(base_s=5, cap_s=60)
    assert p.after(1, 30) == 30
    assert p.after(1, 1) == 5
    assert p.after(1, 10_000) == 60


def test_retry_after_reads_seconds_and_dates() -> None:
    assert parse_retry_after("120", T0) == 120
    assert parse_retry_after("Sun, 01 Mar 2026 12:01:00 GMT", T0) == 60
    assert parse_retry_after("soon", T0) is None
    assert parse_retry_after("9" * 100, T0) is None
    assert parse_retry_after(None, T0) is None
