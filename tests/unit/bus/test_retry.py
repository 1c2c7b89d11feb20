"""bus.retry: attempts, capped jittered backoff, deadline — on a fake clock (no real waits)."""

from __future__ import annotations

import pytest

from kanade.bus.retry import Backoff, retry


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay


class Flaky:
    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return "ok"


async def test_returns_after_transient_failures() -> None:
    clock, step = FakeTime(), Flaky(3)
    got = await retry(step, sleep=clock.sleep, monotonic=clock.monotonic)
    assert got == "ok" and step.calls == 4 and len(clock.sleeps) == 3


async def test_attempts_bound_the_calls_and_reraise_the_last_error() -> None:
    clock, step = FakeTime(), Flaky(10)
    with pytest.raises(ConnectionError, match="failure 3"):
        await retry(step, attempts=3, sleep=clock.sleep, monotonic=clock.monotonic)
    assert step.calls == 3 and len(clock.sleeps) == 2


async def test_one_attempt_never_waits() -> None:
    clock, step = FakeTime(), Flaky(1)
    with pytest.raises(ConnectionError):
        await retry(step, attempts=1, sleep=clock.sleep, monotonic=clock.monotonic)
    assert clock.sleeps == []


async def test_deadline_shortens_the_last_wait_then_gives_up() -> None:
    clock, step = FakeTime(), Flaky(1000)
    with pytest.raises(ConnectionError):
        await retry(
            step, base=1.0, cap=1.0, deadline=5.0, sleep=clock.sleep, monotonic=clock.monotonic
        )
    assert clock.now <= 5.0
    assert sum(clock.sleeps) == pytest.approx(clock.now)


async def test_other_errors_are_not_retried() -> None:
    clock, step = FakeTime(), Flaky(1, error=KeyError)
    with pytest.raises(KeyError):
        await retry(step, retry_on=(ConnectionError,), sleep=clock.sleep, monotonic=clock.monotonic)
    assert step.calls == 1


async def test_on_retry_is_told_each_failure() -> None:
    clock, step = FakeTime(), Flaky(2)
    seen: list[tuple[int, str, float]] = []
    await retry(
        step,
        on_retry=lambda n, exc, delay: seen.append((n, str(exc), delay)),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )
    assert [(n, msg) for n, msg, _ in seen] == [(1, "failure 1"), (2, "failure 2")]
    assert [d for *_, d in seen] == clock.sleeps


async def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        await retry(Flaky(0), attempts=0)


def test_backoff_is_capped_full_jitter() -> None:
    backoff = Backoff(base=0.1, cap=2.0)
    ceilings = [min(2.0, 0.1 * 2**n) for n in range(10)]
    for ceiling in ceilings:
        assert 0.0 <= backoff.next_delay() <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 0.1
