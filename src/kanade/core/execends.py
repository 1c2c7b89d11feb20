"""Every exec ends (SPEC §4.3): which expected pcs that never started an exec are closed as
``no_result``, when, and with which reason. Pure: the clock and every fact are arguments.

A pc that never started is closed at the exec's deadline (plus a grace), or at once when
nothing can ever reach it any more (the exec was rejected or cancelled, its rollout was
aborted before the pc's wave went out). A real result that arrives later still replaces the
row. The narrative: docs/backend.md, "Every exec ends".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from kanade.core import subjects
from kanade.core.instants import format_instant
from kanade.core.lifecycle import NO_START_GRACE, no_start_due
from kanade.core.models.target import Target
from kanade.core.statuses import ExecStatus, RolloutStatus

NO_RESULT: Final = "no_result"
"""The ``results.state`` of an expected pc closed without a result."""


@dataclass(frozen=True)
class WaveView:
    """One wave of a rollout, as far as closing its pcs goes."""

    index: int
    label: str
    pcs: frozenset[str]
    request_id: str
    sent: bool


@dataclass(frozen=True)
class RolloutView:
    status: str
    waves: tuple[WaveView, ...] = ()

    def wave_of(self, pc_id: str) -> WaveView | None:
        return next((w for w in self.waves if pc_id in w.pcs), None)


@dataclass(frozen=True)
class ExecView:
    """What closing needs to know of one exec. ``deadline`` is the exec's own (the latest
    instant any of its commands may still start)."""

    exec_id: str
    job_id: str
    status: str
    request_id: str
    expected_pcs: tuple[str, ...]
    deadline: datetime
    rollout: RolloutView | None = None


@dataclass(frozen=True)
class NoResult:
    """A ``no_result`` row to write: ``at`` is its recorded/finished instant (the due
    instant, not the wall clock, when there is one: a re-projection writes the same row)."""

    pc_id: str
    request_id: str
    at: datetime
    note: str


@dataclass(frozen=True)
class Closing:
    rows: list[NoResult] = field(default_factory=list)
    # No expected pc is left waiting (every one has a row or gets one now) and none can
    # start any more (the deadline plus grace has passed, or the exec was rejected or
    # cancelled): the exec has ended for good; a live one completes.
    ended: bool = False
    # The earliest instant a still-open pc is due (None: nothing due, or not known yet).
    next_due: datetime | None = None


_REJECTED_NOTE: Final = "no result: never sent, the exec was rejected in approval"
_CANCELLED_NOTE: Final = "no result: the exec was cancelled before this pc started"


def _deadline_note(ex: ExecView, superseded_by: str | None) -> str:
    when = format_instant(ex.deadline)
    if superseded_by is not None:
        return (
            f"no result: never started by the exec's deadline {when}; a newer command of "
            f"job {ex.job_id} for the same address (exec {superseded_by}) replaced it in "
            "the queue; a late result from the agent will replace this"
        )
    return (
        f"no result: never started by the exec's deadline {when} (the agent was offline, "
        "stopped or gone); a late result from the agent will replace this"
    )


def _unsent_note(rollout: RolloutView, wave: WaveView, ex: ExecView) -> str:
    # Waves are numbered from 0, as the rollout API and its halt reason number them.
    which = f"its wave {wave.index} ({wave.label})"
    if rollout.status == RolloutStatus.HALTED:
        return (
            f"no result: never sent, the rollout halted before {which} went out; given up "
            f"at the exec's deadline {format_instant(ex.deadline)}"
        )
    return f"no result: never sent, the rollout was aborted before {which} went out"


def close_unstarted(
    ex: ExecView,
    reported: Collection[str],
    now: datetime,
    *,
    grace: timedelta = NO_START_GRACE,
    superseded_by: Mapping[str, str] | None = None,
) -> Closing:
    """The ``no_result`` rows due at ``now`` for the expected pcs of ``ex`` without a row
    (``reported``: the pcs that have one), and whether the exec then waits for nobody.

    ``superseded_by`` maps a pc to the newer exec of the same job whose command replaced
    this one in the queue on that pc's address (see :func:`superseding_exec`).
    """
    if ex.status == ExecStatus.AWAITING_APPROVAL:
        return Closing()  # nothing was sent yet; the approval's own expiry ends it
    due_at = no_start_due(ex.deadline, grace)
    rows: list[NoResult] = []
    open_due: list[datetime] = []
    unknown = False  # a pc whose closing instant is not known yet (an unsent wave)
    for pc in sorted(set(ex.expected_pcs) - set(reported)):
        request_id, at, note = ex.request_id, due_at, ""
        wave = ex.rollout.wave_of(pc) if ex.rollout is not None else None
        if wave is not None:
            request_id = wave.request_id
        if ex.status == ExecStatus.REJECTED:
            at, note = now, _REJECTED_NOTE
        elif wave is not None and not wave.sent:
            assert ex.rollout is not None
            gone = ex.rollout.status in (RolloutStatus.ABORTED, RolloutStatus.REJECTED)
            if gone or ex.status == ExecStatus.CANCELLED:
                at = now
            elif ex.rollout.status != RolloutStatus.HALTED:
                unknown = True  # the rollout may still send it
                continue
            note = _unsent_note(ex.rollout, wave, ex)
        elif ex.status == ExecStatus.CANCELLED and ex.rollout is None:
            # A kill deletes the queued copies: nothing reaches this pc any more.
            at, note = now, _CANCELLED_NOTE
        else:
            note = _deadline_note(ex, (superseded_by or {}).get(pc))
        if at > now:
            open_due.append(at)
            continue
        rows.append(NoResult(pc, request_id, at, note))
    # Rejected or cancelled: it ends once nothing is left open. Otherwise its deadline
    # must have passed too — until then a pc may still start.
    stopped = ex.status in (ExecStatus.REJECTED, ExecStatus.CANCELLED)
    return Closing(
        rows=rows,
        ended=not open_due and not unknown and (stopped or now >= due_at),
        next_due=min(open_due) if open_due else None,
    )


def _pc_subjects(target: Target, job_id: str, pc_id: str) -> set[str]:
    """The command subjects through which ``target`` may have addressed ``pc_id`` (group
    membership at the time is not known here, so every group subject counts)."""
    out = {subjects.command_subject("group", g, job_id) for g in target.groups}
    if target.all:
        out.add(subjects.command_subject("all", None, job_id))
    if pc_id in target.pcs:
        out.add(subjects.command_subject("pc", pc_id, job_id))
    return out


def superseding_exec(
    target: Target, job_id: str, pc_id: str, newer: Sequence[tuple[str, Target]]
) -> str | None:
    """The first of ``newer`` (execs of the same job, oldest first, created after this one
    and before its deadline) published on an address that also reached ``pc_id``: the
    command stream keeps one message per address, so that one replaced ours in the queue."""
    mine = _pc_subjects(target, job_id, pc_id)
    for exec_id, other in newer:
        if mine & _pc_subjects(other, job_id, pc_id):
            return exec_id
    return None


__all__ = [
    "NO_RESULT",
    "Closing",
    "ExecView",
    "NoResult",
    "RolloutView",
    "WaveView",
    "close_unstarted",
    "superseding_exec",
]
