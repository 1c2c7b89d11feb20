"""Login attempts limited per user and per address (SPEC §8.3): after too many failures in
a window, further attempts are answered 429 with ``Retry-After`` — before any password is
checked, so a flood costs no argon2 time either.

In memory, per backend process: limits are about seconds and minutes, and a restart (or a
second replica) grants at most one more window. Bounded: at most ``max_keys`` users and
addresses are tracked, the oldest forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_KEYS: Final = 10_000


@dataclass(frozen=True)
class LoginLimits:
    failures_per_user: int = 5
    failures_per_address: int = 20
    window_s: float = 300.0

    def __post_init__(self) -> None:
        if self.failures_per_user < 1 or self.failures_per_address < 1:
            raise ValueError("login limits must allow at least one failure")
        if not 1.0 <= self.window_s <= 86_400.0:
            raise ValueError("the login window must be between 1 s and 1 day")


class _Window:
    """Failure instants per key, newest last, each key's deque no longer than its limit."""

    def __init__(self, limit: int, window_s: float, max_keys: int) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def _live(self, key: str, now: float) -> deque[float] | None:
        hits = self._hits.get(key)
        if hits is None:
            return None
        while hits and now - hits[0] >= self.window_s:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        return hits

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        hits = self._live(key, now)
        if hits is None or len(hits) < self.limit:
            return 0.0
        return hits[0] + self.window_s - now

    def hit(self, key: str, now: float) -> None:
        hits = self._live(key, now)
        if hits is None:
            hits = self._hits[key] = deque(maxlen=self.limit)
        hits.append(now)
        self._hits.move_to_end(key)
        while len(self._hits) > self.max_keys:
            self._hits.popitem(last=False)

    def clear(self, key: str) -> None:
        self._hits.pop(key, None)


class LoginLimiter:
    def __init__(
        self,
        limits: LoginLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self.limits = limits or LoginLimits()
        self._clock = clock
        self._users = _Window(self.limits.failures_per_user, self.limits.window_s, max_keys)
        self._addresses = _Window(
            self.limits.failures_per_address, self.limits.window_s, max_keys
        )

    def retry_after(self, username: str, address: str) -> tuple[float, str] | None:
        """``(seconds, which limit)`` when this attempt must wait, else None."""
        now = self._clock()
        by_address = self._addresses.wait(address, now)
        by_user = self._users.wait(username, now)
        if by_address <= 0 and by_user <= 0:
            return None
        if by_address >= by_user:
            return by_address, f"{self.limits.failures_per_address} failed logins from {address}"
        return by_user, f"{self.limits.failures_per_user} failed logins for {username!r}"

    def failed(self, username: str, address: str) -> None:
        now = self._clock()
        self._users.hit(username, now)
        self._addresses.hit(address, now)

    def succeeded(self, username: str) -> None:
        """The user proved who they are: their own failures no longer count (the
        address's do: one good account must not unlock guessing at the others)."""
        self._users.clear(username)
