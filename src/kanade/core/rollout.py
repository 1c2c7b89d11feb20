"""Rollout wave maths (SPEC §4.7): split, wave progress, failure thresholds, next due time.
Pure: the clock is an argument.

Each rule and why a restarted backend recomputes the same answers:
docs/rollouts-approvals.md, "Wave maths".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Final, Literal

from kanade.core.lifecycle import result_ttl_s
from kanade.core.models.waves import Wave
from kanade.core.statuses import RolloutStatus

WaveKind = Literal["group", "pcs", "percent", "rest"]
PcState = Literal["pending", "running", "succeeded", "failed", "skipped"]
Decision = Literal["next", "halt", "complete"]

REST_PERCENT: Final = 100.0


@dataclass(frozen=True)
class WavePlan:
    """One wave as persisted when the rollout is created."""

    index: int
    kind: WaveKind
    label: str
    pcs: tuple[str, ...]
    delay_s: float
    implicit: bool = False
    not_in_target: tuple[str, ...] = ()


def percent_count(remaining: int, percent: float) -> int:
    """How many of ``remaining`` pcs ``percent`` % takes: the ceiling, computed exactly
    (``Decimal`` of the written number, so 10 % of 30 is 3, not 4), at least one while any
    remain, never more than remain."""
    if remaining <= 0:
        return 0
    if not (0 < percent <= 100) or math.isnan(percent):
        raise ValueError(f"percent must be in (0, 100], got {percent!r}")
    exact = Fraction(Decimal(repr(float(percent)))) * remaining / 100
    return max(1, min(remaining, math.ceil(exact)))


def _label(wave: Wave) -> tuple[WaveKind, str]:
    if wave.group is not None:
        return "group", f"group:{wave.group}"
    if wave.pcs is not None:
        return "pcs", "pcs:" + ",".join(wave.pcs)
    assert wave.percent is not None
    if wave.percent >= REST_PERCENT:
        return "rest", "rest"
    return "percent", f"{wave.percent:g}%"


def split_waves(
    waves: Sequence[Wave],
    target_pcs: Iterable[str],
    groups_of: Mapping[str, Iterable[str]],
) -> list[WavePlan]:
    """Partition ``target_pcs`` into waves (see the module doc). Deterministic: the same
    inputs give the same plans, whatever order ``target_pcs`` comes in."""
    remaining = sorted(set(target_pcs))
    plans: list[WavePlan] = []
    for index, wave in enumerate(waves):
        kind, label = _label(wave)
        taken: list[str]
        outside: tuple[str, ...] = ()
        if wave.group is not None:
            group = wave.group
            taken = [pc for pc in remaining if group in set(groups_of.get(pc, ()))]
        elif wave.pcs is not None:
            listed = set(wave.pcs)
            taken = [pc for pc in remaining if pc in listed]
            outside = tuple(sorted(listed - set(remaining)))
        else:
            assert wave.percent is not None
            taken = remaining[: percent_count(len(remaining), wave.percent)]
        chosen = set(taken)
        remaining = [pc for pc in remaining if pc not in chosen]
        plans.append(
            WavePlan(
                index=index,
                kind=kind,
                label=label,
                pcs=tuple(taken),
                delay_s=wave.delay.total_seconds(),
                not_in_target=outside,
            )
        )
    if remaining:
        plans.append(
            WavePlan(
                index=len(plans),
                kind="rest",
                label="rest (implicit)",
                pcs=tuple(remaining),
                delay_s=plans[-1].delay_s if plans else 0.0,
                implicit=True,
            )
        )
    return plans


# --- progress of a dispatched wave -----------------------------------------------------------


@dataclass(frozen=True)
class ResultView:
    """The parts of one results row a wave needs."""

    state: str  # in_flight | finished | reaped | no_result
    exit_code: int | None
    skipped: bool
    recorded_at: datetime


def pc_state(row: ResultView | None) -> PcState:
    if row is None:
        return "pending"
    if row.state == "in_flight":
        return "running"
    if row.state in ("reaped", "no_result"):  # no result by the deadline: a failure
        return "failed"
    if row.skipped:
        return "skipped"
    return "succeeded" if row.exit_code == 0 else "failed"


@dataclass(frozen=True)
class WaveProgress:
    size: int
    pending: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    settled: bool = False
    settled_at: datetime | None = None
    # Unfinished pcs when the wave was settled by its horizon (counted as failures).
    missing: int = 0
    failed_pcs: tuple[str, ...] = field(default=())

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.skipped

    @property
    def failure_rate(self) -> float:
        return failure_rate(self.failed, self.missing, self.size)

    def to_dict(self) -> dict[str, object]:
        return {
            "size": self.size,
            "pending": self.pending,
            "running": self.running,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "skipped": self.skipped,
            "missing": self.missing,
            "finished": self.finished,
            "failure_rate": round(self.failure_rate, 6),
            "settled": self.settled,
        }


def settle_after_s(timeout_s: float | None, jitter_s: float = 0.0) -> float:
    """How long after dispatch a wave is settled even if some pcs never answered: the
    reaper's horizon for an in-flight row (timeout + max(2 min, timeout/2)) plus jitter."""
    return result_ttl_s(timeout_s) + max(0.0, jitter_s)


def wave_progress(
    pcs: Sequence[str],
    rows: Mapping[str, ResultView],
    *,
    dispatched_at: datetime,
    settle_after: timedelta,
    now: datetime,
) -> WaveProgress:
    """The wave's counts at ``now`` from its result rows (``rows`` keyed by pc)."""
    counts: dict[PcState, int] = {
        "pending": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "skipped": 0,
    }
    failed_pcs: list[str] = []
    last: datetime | None = None
    for pc in pcs:
        row = rows.get(pc)
        state = pc_state(row)
        counts[state] += 1
        if state == "failed":
            failed_pcs.append(pc)
        if row is not None and state not in ("pending", "running"):
            last = row.recorded_at if last is None else max(last, row.recorded_at)
    unfinished = counts["pending"] + counts["running"]
    horizon = dispatched_at + settle_after
    settled_at: datetime | None = None
    missing = 0
    if unfinished == 0:
        settled_at = dispatched_at if last is None else max(last, dispatched_at)
    elif now >= horizon:
        settled_at, missing = horizon, unfinished
    return WaveProgress(
        size=len(pcs),
        pending=counts["pending"],
        running=counts["running"],
        succeeded=counts["succeeded"],
        failed=counts["failed"],
        skipped=counts["skipped"],
        settled=settled_at is not None,
        settled_at=settled_at,
        missing=missing,
        failed_pcs=tuple(failed_pcs),
    )


def failure_rate(failed: int, missing: int, size: int) -> float:
    return 0.0 if size <= 0 else (failed + missing) / size


def exceeds(rate: float, threshold: float | None) -> bool:
    """Strictly greater: a threshold of 0.2 tolerates exactly 20 %."""
    return threshold is not None and rate > threshold


def decide_after_wave(
    index: int, wave_count: int, rate: float, threshold: float | None
) -> Decision:
    if index + 1 >= wave_count:
        return "complete"
    return "halt" if exceeds(rate, threshold) else "next"


STATUS_AFTER: Final[dict[Decision, RolloutStatus]] = {
    "next": RolloutStatus.RUNNING,
    "halt": RolloutStatus.HALTED,
    "complete": RolloutStatus.COMPLETED,
}
"""The rollout's status once a wave settled with each decision (running → running is no
move; see :data:`kanade.core.statuses.ROLLOUT_TRANSITIONS`)."""


def next_due_at(settled_at: datetime, delay_s: float) -> datetime:
    """A wave is due ``delay`` after the previous one settled."""
    return settled_at + timedelta(seconds=max(0.0, delay_s))


def wave_request_id(exec_id: str, index: int) -> str:
    """The request id of wave ``index`` of ``exec_id``: deterministic, so the command a
    restarted backend re-publishes is the same one (broker dedup, agent ledger)."""
    return f"{exec_id}-w{index}"
