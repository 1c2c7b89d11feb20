"""Who fires at a reconcile poll (SPEC §3.6, §4.4): per-pc dedup and dispatch marks.

The per-pc rules in order: docs/scheduling-core.md, "Reconcile polls: per-pc dedup and
dispatch marks".
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from kanade.core.durations import format_duration
from kanade.core.instants import format_instant
from kanade.core.scheduling.lowering import DedupMode, Plan
from kanade.core.scheduling.timezones import to_utc

RUN_MARGIN: Final = timedelta(seconds=60)
"""Slack added to the longest a run can take before its result is expected."""


def run_horizon(
    start: datetime,
    *,
    jitter: timedelta,
    timeout: timedelta,
    retry_max: int = 0,
    backoff: timedelta = timedelta(0),
) -> datetime:
    """``start + jitter + timeout + retry_max x (timeout + backoff) + 60 s``: by then a run
    started at ``start`` has reported, or never will."""
    if retry_max < 0:
        raise ValueError("retry_max cannot be negative")
    return start + jitter + timeout + retry_max * (timeout + backoff) + RUN_MARGIN


def dispatch_mark_until(
    dispatched_at: datetime,
    *,
    jitter: timedelta,
    timeout: timedelta,
    retry_max: int = 0,
    backoff: timedelta = timedelta(0),
) -> datetime:
    """Until when a dispatch mark blocks re-firing the pc (see :func:`run_horizon`)."""
    return run_horizon(
        to_utc(dispatched_at), jitter=jitter, timeout=timeout, retry_max=retry_max, backoff=backoff
    )


@dataclass(frozen=True)
class DispatchMark:
    """The scheduler dispatched this pc (stored in the dispatch-marks KV bucket)."""

    pc_id: str
    dispatched_at: datetime
    until: datetime
    occurrence_id: str | None = None

    def __post_init__(self) -> None:
        to_utc(self.dispatched_at)  # both aware, or ValueError
        to_utc(self.until)

    def blocks(self, now: datetime, last_result_at: datetime | None = None) -> bool:
        """Live (``now < until``) and not yet reported (aware datetimes)."""
        if last_result_at is not None and last_result_at >= self.dispatched_at:
            return False
        return now < self.until


def make_dispatch_mark(
    plan: Plan,
    pc_id: str,
    *,
    dispatched_at: datetime,
    timeout: timedelta,
    occurrence_id: str | None = None,
) -> DispatchMark:
    """The mark for dispatching ``pc_id`` under ``plan`` (jitter and retry from the plan,
    ``timeout`` from the job as read at fire time)."""
    return DispatchMark(
        pc_id=pc_id,
        dispatched_at=to_utc(dispatched_at),
        until=dispatch_mark_until(
            dispatched_at,
            jitter=plan.jitter,
            timeout=timeout,
            retry_max=plan.retry_max,
            backoff=plan.retry_backoff,
        ),
        occurrence_id=occurrence_id,
    )


PcReason = Literal[
    "never_succeeded",  # fires
    "every_elapsed",  # fires
    "no_member_succeeded",  # fires (per_target)
    "offline",
    "dispatched",
    "succeeded",  # per_pc once: already succeeded
    "succeeded_recently",  # per_pc every: last success less than every ago
    "member_succeeded",  # per_target: some member succeeded (within every)
    "no_member_alive",  # per_target: nobody to run it
]


_OFFLINE_DETAIL: Final = "not alive (no heartbeat within 2 min)"



@dataclass(frozen=True, slots=True)
class PcDecision:
    """One pc's outcome at a poll. ``at``/``until``/``member`` carry the facts behind the
    reason; :attr:`detail` turns them into a sentence only when someone reads it."""

    pc_id: str
    would_fire: bool
    reason: PcReason
    at: datetime | None = None
    """Last success (``succeeded*``, ``every_elapsed``, ``member_succeeded``) or
    ``dispatched_at`` (``dispatched``)."""
    until: datetime | None = None
    """When the pc is due again (``succeeded_recently``) or the mark ends (``dispatched``)."""
    member: str | None = None
    """The member whose success holds a ``per_target`` schedule."""
    every: timedelta | None = None

    @property
    def detail(self) -> str:
        at = "" if self.at is None else format_instant(self.at)
        until = "" if self.until is None else format_instant(self.until)
        every = "" if self.every is None else format_duration(self.every)
        within = "" if self.every is None else f" (within {every})"
        texts: dict[str, str] = {
            "never_succeeded": "never succeeded",
            "every_elapsed": f"last success at {at}, at least {every} ago",
            "no_member_succeeded": "no member succeeded",
            "offline": _OFFLINE_DETAIL,
            "dispatched": f"dispatched at {at}, not reported; not fired again before {until}",
            "succeeded": f"succeeded at {at} (once)",
            "succeeded_recently": f"last success at {at}; due again at {until}",
            "member_succeeded": f"member {self.member} succeeded at {at}{within}",
            "no_member_alive": "no target member is alive",
        }
        return texts[self.reason]

    def to_dict(self) -> dict[str, str | bool]:
        return {
            "pc_id": self.pc_id,
            "would_fire": self.would_fire,
            "reason": self.reason,
            "detail": self.detail,
        }


def _decide_pc(
    mode: DedupMode,
    pc_id: str,
    now: datetime,
    alive: bool,
    last_success: datetime | None,
    mark: DispatchMark | None,
    last_result_at: datetime | None,
) -> PcDecision:
    # Hot path (a reconcile tick runs it for every pc of every schedule): no conversions,
    # no text; aware datetimes compare correctly across zones.
    if not alive:
        return PcDecision(pc_id, False, "offline")
    if mark is not None and mark.blocks(now, last_result_at):
        return PcDecision(pc_id, False, "dispatched", at=mark.dispatched_at, until=mark.until)
    if last_success is None:
        return PcDecision(pc_id, True, "never_succeeded")
    every = mode.every
    if every is None:
        return PcDecision(pc_id, False, "succeeded", at=last_success)
    rearm = last_success + every
    if now >= rearm:
        return PcDecision(pc_id, True, "every_elapsed", at=last_success, every=every)
    return PcDecision(pc_id, False, "succeeded_recently", at=last_success, until=rearm)


def pc_decision(
    mode: DedupMode,
    pc_id: str,
    *,
    now: datetime,
    alive: bool,
    last_success: datetime | None,
    mark: DispatchMark | None = None,
    last_result_at: datetime | None = None,
) -> PcDecision:
    """Whether a ``per_pc`` poll fires ``pc_id`` now, and why (or why not)."""
    if mode.scope != "per_pc":
        raise ValueError(f"pc_decision is for per_pc modes, not {mode.kind}")
    if last_success is not None:
        to_utc(last_success)  # aware, or ValueError
    return _decide_pc(mode, pc_id, to_utc(now), alive, last_success, mark, last_result_at)


def per_pc_decisions(
    mode: DedupMode,
    pcs: Iterable[str],
    *,
    now: datetime,
    alive: Collection[str],
    last_success: Mapping[str, datetime],
    marks: Mapping[str, DispatchMark] | None = None,
    last_results: Mapping[str, datetime] | None = None,
) -> list[PcDecision]:
    """:func:`pc_decision` for each targeted pc (in the order given). Times in the mappings
    must be aware."""
    if mode.scope != "per_pc":
        raise ValueError(f"per_pc_decisions is for per_pc modes, not {mode.kind}")
    now = to_utc(now)
    marks = marks or {}
    last_results = last_results or {}
    return [
        _decide_pc(
            mode,
            pc,
            now,
            pc in alive,
            last_success.get(pc),
            marks.get(pc),
            last_results.get(pc),
        )
        for pc in pcs
    ]


def per_pc_to_fire(
    mode: DedupMode,
    pcs: Iterable[str],
    *,
    now: datetime,
    alive: Collection[str],
    last_success: Mapping[str, datetime],
    marks: Mapping[str, DispatchMark] | None = None,
    last_results: Mapping[str, datetime] | None = None,
) -> list[str]:
    """The pcs a ``per_pc`` poll dispatches: exactly those :func:`per_pc_decisions` says
    would fire, without building a decision per pc (the tick's hot loop)."""
    if mode.scope != "per_pc":
        raise ValueError(f"per_pc_to_fire is for per_pc modes, not {mode.kind}")
    now = to_utc(now)
    marks = marks or {}
    last_results = last_results or {}
    every = mode.every
    out: list[str] = []
    for pc in pcs:
        if pc not in alive:
            continue
        mark = marks.get(pc)
        if mark is not None and mark.blocks(now, last_results.get(pc)):
            continue
        success = last_success.get(pc)
        if success is None or (every is not None and now >= success + every):
            out.append(pc)
    return out


@dataclass(frozen=True)
class TargetDecision:
    would_fire: bool
    reason: PcReason
    detail: str
    pcs: tuple[PcDecision, ...]

    @property
    def fire_pcs(self) -> tuple[str, ...]:
        return tuple(d.pc_id for d in self.pcs if d.would_fire)


def per_target_decision(
    mode: DedupMode,
    members: Iterable[str],
    *,
    now: datetime,
    alive: Collection[str],
    last_success: Mapping[str, datetime],
    marks: Mapping[str, DispatchMark] | None = None,
    last_results: Mapping[str, datetime] | None = None,
) -> TargetDecision:
    """Whether a ``per_target`` poll fires, and which members it dispatches."""
    if mode.scope != "per_target":
        raise ValueError(f"per_target_decision is for per_target modes, not {mode.kind}")
    now = to_utc(now)
    marks = marks or {}
    last_results = last_results or {}
    members = list(dict.fromkeys(members))

    winner: tuple[str, datetime] | None = None
    for pc in members:
        success = last_success.get(pc)
        if success is None:
            continue
        if mode.every is not None and now - to_utc(success) >= mode.every:
            continue  # too old: does not count any more
        if winner is None or success > winner[1]:
            winner = (pc, success)
    if winner is not None:
        held = [
            PcDecision(
                pc, False, "member_succeeded", at=winner[1], member=winner[0], every=mode.every
            )
            for pc in members
        ]
        return TargetDecision(False, "member_succeeded", held[0].detail, tuple(held))

    if not any(pc in alive for pc in members):
        offline = tuple(PcDecision(pc, False, "offline") for pc in members)
        return TargetDecision(False, "no_member_alive", "no target member is alive", offline)

    decisions: list[PcDecision] = []
    for pc in members:
        if pc not in alive:
            decisions.append(PcDecision(pc, False, "offline"))
            continue
        mark = marks.get(pc)
        if mark is not None and mark.blocks(now, last_results.get(pc)):
            decisions.append(
                PcDecision(pc, False, "dispatched", at=mark.dispatched_at, until=mark.until)
            )
        else:
            decisions.append(PcDecision(pc, True, "no_member_succeeded"))
    firing = any(d.would_fire for d in decisions)
    return TargetDecision(
        firing,
        "no_member_succeeded" if firing else "dispatched",
        "no member succeeded" if firing else "every alive member is already dispatched",
        tuple(decisions),
    )


@dataclass(frozen=True, slots=True)
class NextDue:
    """When a reconcile schedule next has a pc to fire (the status view's "next fire"):
    ``now`` if some pc is due at once, else the earliest instant one becomes due again (its
    last success plus ``every``, its dispatch mark ending), else None; ``offline`` pcs fire
    when they come back, which no clock says."""

    now: bool
    at: datetime | None
    offline: int
    targeted: int


def next_due(
    mode: DedupMode,
    pcs: Iterable[str],
    *,
    now: datetime,
    alive: Collection[str],
    last_success: Mapping[str, datetime],
    marks: Mapping[str, DispatchMark] | None = None,
    last_results: Mapping[str, datetime] | None = None,
) -> NextDue:
    """The same rules as :func:`per_pc_decisions` / :func:`per_target_decision`, answering
    only "when next": one pass, no decision objects (a schedules list at 10 000 pcs)."""
    now = to_utc(now)
    marks = marks or {}
    last_results = last_results or {}
    members = set(pcs)
    every = mode.every
    per_target = mode.scope == "per_target"
    due: datetime | None = None
    offline = 0
    if per_target:
        recent = [
            s for pc in members if (s := last_success.get(pc)) is not None
            and (every is None or now - to_utc(s) < every)
        ]
        if recent:
            return NextDue(False, None if every is None else max(recent) + every, 0,
                           len(members))  # fmt: skip
    for pc in members:
        if pc not in alive:
            offline += 1
            continue
        mark = marks.get(pc)
        if mark is not None and mark.blocks(now, last_results.get(pc)):
            due = mark.until if due is None or mark.until < due else due
            continue
        if per_target:
            return NextDue(True, now, offline, len(members))
        success = last_success.get(pc)
        if success is None or (every is not None and now >= success + every):
            return NextDue(True, now, offline, len(members))
        if every is not None:
            again = success + every
            due = again if due is None or again < due else due
    return NextDue(False, due, offline, len(members))
