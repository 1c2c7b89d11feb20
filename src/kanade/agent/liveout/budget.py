"""What an agent may publish as live output: bytes per second and messages per second, two
token buckets on an injected monotonic clock (pure, no I/O)."""

from __future__ import annotations

import math
from typing import Final

MIN_INTERVAL_S: Final = 0.01
"""The shortest wait :meth:`Budget.wait_s` answers (never a busy loop)."""


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; starts full."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = now

    def available(self, now: float) -> float:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
        return self._tokens

    def spend(self, n: float, now: float) -> None:
        self.available(now)
        self._tokens -= n

    def wait_s(self, n: float, now: float) -> float:
        """Seconds until ``n`` tokens are there (``n`` at most ``burst``)."""
        missing = min(n, self.burst) - self.available(now)
        return 0.0 if missing <= 0 else missing / self.rate

    def retune(self, rate: float, burst: float, now: float) -> None:
        self.available(now)
        self.rate, self.burst = rate, burst
        self._tokens = min(self._tokens, burst)


class Budget:
    """The agent-wide live-output cap: ``bytes_per_s`` bytes of output and ``msgs_per_s``
    messages per second, each with one second's worth of burst."""

    def __init__(self, bytes_per_s: int, msgs_per_s: float, now: float) -> None:
        self.bytes = TokenBucket(bytes_per_s, bytes_per_s, now)
        self.msgs = TokenBucket(msgs_per_s, max(1.0, msgs_per_s), now)

    def grant(self, want: int, now: float) -> int | None:
        """Spend one message and up to ``want`` bytes: the bytes that message may carry
        (0 for a message with no text, e.g. the last one of a run); None when no message
        may go now, or ``want`` > 0 bytes and not one byte may."""
        if self.msgs.available(now) < 1:
            return None
        n = min(want, math.floor(self.bytes.available(now)))
        if want > 0 and n <= 0:
            return None
        self.msgs.spend(1, now)
        self.bytes.spend(n, now)
        return n

    def wait_s(self, want: int, now: float) -> float:
        """How long until :meth:`grant` can give a message with ``want`` > 0 bytes at least
        one byte (with 0, a message)."""
        wait = max(self.msgs.wait_s(1, now), self.bytes.wait_s(1, now) if want > 0 else 0.0)
        return max(MIN_INTERVAL_S, wait)

    def retune(self, bytes_per_s: int, msgs_per_s: float, now: float) -> None:
        self.bytes.retune(bytes_per_s, bytes_per_s, now)
        self.msgs.retune(msgs_per_s, max(1.0, msgs_per_s), now)
