"""The agent's in-flight claims for local fires (SPEC §3.6), as a pure state machine
(:func:`claim_until`).

The claim's length and its moves: docs/scheduling-core.md, "The agent's in-flight claims".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from kanade.core.instants import format_instant
from kanade.core.scheduling.dedup import run_horizon
from kanade.core.scheduling.timezones import to_utc


def claim_until(
    now: datetime,
    jitter: timedelta,
    timeout: timedelta,
    retry_max: int,
    backoff: timedelta,
) -> datetime:
    """``now + jitter + timeout + retry_max x (timeout + backoff) + 60 s``."""
    return run_horizon(now, jitter=jitter, timeout=timeout, retry_max=retry_max, backoff=backoff)


@dataclass(frozen=True)
class Claim:
    schedule_id: str
    owner: str
    claimed_at: datetime
    until: datetime

    def live(self, now: datetime) -> bool:
        return to_utc(now) < to_utc(self.until)


ClaimStatus = Literal["claimed", "busy", "taken_over"]


@dataclass(frozen=True)
class ClaimAttempt:
    status: ClaimStatus
    claim: Claim
    """The claim now in the table: ours when granted, the live holder's when busy."""
    previous: Claim | None = None
    """The expired claim that was taken over (``status == "taken_over"``)."""

    @property
    def granted(self) -> bool:
        return self.status != "busy"

    @property
    def warning(self) -> str | None:
        if self.previous is None:
            return None
        return (
            f"schedule {self.claim.schedule_id}: claim of {self.previous.owner} expired at "
            f"{format_instant(self.previous.until)} without release; "
            f"taken over by {self.claim.owner}"
        )


@dataclass(frozen=True)
class Finish:
    released: bool
    """The run still held the claim and released it."""
    record_success: bool
    """Record this as the schedule's last success (the script ran and exited 0)."""


def counts_as_success(*, ran: bool, exit_code: int | None, skipped: bool = False) -> bool:
    """A run counts as a success only if the script ran, was not skipped, and exited 0."""
    return ran and not skipped and exit_code == 0


class ClaimTable:
    """Claims per schedule id. Mutable, but pure: no clock, no I/O."""

    def __init__(self, claims: Iterable[Claim] = ()) -> None:
        self._claims: dict[str, Claim] = {c.schedule_id: c for c in claims}

    def get(self, schedule_id: str) -> Claim | None:
        return self._claims.get(schedule_id)

    def snapshot(self) -> tuple[Claim, ...]:
        return tuple(sorted(self._claims.values(), key=lambda c: c.schedule_id))

    def __len__(self) -> int:
        return len(self._claims)

    def try_claim(
        self, schedule_id: str, owner: str, *, now: datetime, until: datetime
    ) -> ClaimAttempt:
        """Claim ``schedule_id`` for ``owner`` until ``until`` (see the module rules)."""
        now, until = to_utc(now), to_utc(until)
        if until <= now:
            raise ValueError("a claim must end after now")
        current = self._claims.get(schedule_id)
        if current is not None and current.live(now):
            return ClaimAttempt("busy", current)
        claim = Claim(schedule_id, owner, now, until)
        self._claims[schedule_id] = claim
        if current is None:
            return ClaimAttempt("claimed", claim)
        return ClaimAttempt("taken_over", claim, previous=current)

    def release(self, schedule_id: str, owner: str) -> bool:
        """Drop the claim if ``owner`` holds it; False (and no change) otherwise."""
        current = self._claims.get(schedule_id)
        if current is None or current.owner != owner:
            return False
        del self._claims[schedule_id]
        return True

    def finish(
        self,
        schedule_id: str,
        owner: str,
        *,
        ran: bool,
        exit_code: int | None,
        skipped: bool = False,
    ) -> Finish:
        """A run of ``owner`` ended: release if still held; say whether it is a success."""
        return Finish(
            released=self.release(schedule_id, owner),
            record_success=counts_as_success(ran=ran, exit_code=exit_code, skipped=skipped),
        )

    def expire(self, now: datetime) -> list[Claim]:
        """Drop and return claims no longer live at ``now`` (housekeeping)."""
        dead = [c for c in self._claims.values() if not c.live(now)]
        for claim in dead:
            del self._claims[claim.schedule_id]
        return dead
