"""When a failed delivery is tried again: exponential backoff with a cap, and a bound on
attempts. Deterministic (no jitter): deliveries are few, and a receiver's ``Retry-After``
— honoured up to the cap — is what spreads a burst."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final

MAX_RETRY_AFTER_TEXT: Final = 64


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 5.0
    """The wait after the first failed attempt; it doubles after each further one."""
    cap_s: float = 3600.0
    """The longest wait between two attempts."""
    max_attempts: int = 12
    """After this many failed attempts the delivery is ``failed`` (an operator may retry)."""

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
        exponent = min(max(0, attempts - 1), 60)  # 2**60 s is past any cap
        return min(self.cap_s, self.base_s * float(2**exponent))

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts

    def after(self, attempts: int, retry_after_s: float | None) -> float:
        """The wait before the next attempt: the backoff, or a longer ``Retry-After``
        the receiver asked for, never beyond the cap."""
        wait = self.delay(attempts)
        if retry_after_s is not None:
            wait = max(wait, retry_after_s)
        return min(self.cap_s, wait)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` header (seconds, or an HTTP date) as seconds from ``now``; None
    when absent or unreadable."""
    if not value or len(value) > MAX_RETRY_AFTER_TEXT:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())
