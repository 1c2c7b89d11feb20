"""Failed logins limited per user and per address (kanade.backend.services.auth.ratelimit)."""

from __future__ import annotations

import pytest

from kanade.backend.services.auth.ratelimit import LoginLimiter, LoginLimits


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def limiter(clock: Clock, **limits: float) -> LoginLimiter:
    return LoginLimiter(LoginLimits(**limits), clock=clock)  # type: ignore[arg-type]


def test_user_is_limited_after_its_failures_until_the_window_frees() -> None:
    clock = Clock()
    lim = limiter(clock, failures_per_user=3, failures_per_address=100, window_s=60)
    for i in range(3):
        assert lim.retry_after("alice", f"10.0.0.{i}") is None
        lim.failed("alice", f"10.0.0.{i}")
        clock.t += 1
    wait = lim.retry_after("alice", "10.0.0.9")
    assert wait is not None and wait[0] == pytest.approx(57) and "'alice'" in wait[1]
    assert lim.retry_after("bob", "10.0.0.9") is None  # other users are not affected
    clock.t += 56
    assert lim.retry_after("alice", "10.0.0.9") is not None
    clock.t += 1  # the oldest failure leaves the window
    assert lim.retry_after("alice", "10.0.0.9") is None


def test_address_is_limited_across_usernames() -> None:
    clock = Clock()
    lim = limiter(clock, failures_per_user=100, failures_per_address=4, window_s=60)
    for i in range(4):
        lim.failed(f"user{i}", "192.0.2.1")
    wait = lim.retry_after("someone-else", "192.0.2.1")
    assert wait is not None and "192.0.2.1" in wait[1]
    assert lim.retry_after("someone-else", "192.0.2.2") is None


def test_success_clears_the_users_failures_not_the_addresss() -> None:
    clock = Clock()
    lim = limiter(clock, failures_per_user=2, failures_per_address=3, window_s=60)
    lim.failed("alice", "a")
    lim.failed("alice", "a")
    assert lim.retry_after("alice", "b") is not None
    lim.succeeded("alice")
    assert lim.retry_after("alice", "b") is None
    lim.failed("mallory", "a")
    assert lim.retry_after("alice", "a") is not None  # the address's three failures count


def test_memory_is_bounded() -> None:
    clock = Clock()
    lim = LoginLimiter(LoginLimits(), clock=clock, max_keys=100)
    for i in range(10_000):
        lim.failed(f"user{i}", f"addr{i}")
    assert len(lim._users._hits) <= 100 and len(lim._addresses._hits) <= 100


@pytest.mark.parametrize(
    "limits",
    [{"failures_per_user": 0}, {"failures_per_address": 0}, {"window_s": 0.0}, {"window_s": 1e9}],
)
def test_limits_are_checked(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LoginLimits(**limits)  # type: ignore[arg-type]
