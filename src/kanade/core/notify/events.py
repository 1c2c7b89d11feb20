"""What a notification is about: the event kinds, one :class:`Event` per fact, and its text.

An event's ``key`` names the fact it reports (``exec.failed:<exec_id>``), so detecting the
same fact twice — a rescan after a restart, a second replica — yields the same
:func:`event_id`, and the store keeps it once. Every text is bounded here, where it is
built, so a payload can never grow with a fleet or a reason string.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from kanade.core.durations import format_duration
from kanade.core.instants import format_instant, format_optional


class EventKind(StrEnum):
    EXEC_FAILED = "exec.failed"
    """An exec completed and at least one pc failed (non-zero exit, reaped, no result)."""
    SCHEDULE_SKIPPED = "schedule.skipped"
    """A schedule's fire was skipped (window, skip date, freeze, deadline passed, …)."""
    SCHEDULE_MISSED = "schedule.missed"
    """Fires came due while nothing could fire them (downtime) and were not run."""
    AGENT_OFFLINE = "agent.offline"
    """No heartbeat from an agent for longer than the webhook's ``offline_after``."""
    ROLLOUT_HALTED = "rollout.halted"
    """A rollout wave exceeded its failure threshold and the rollout stopped."""
    AGENT_QUARANTINED = "agent.quarantined"
    """An agent's self-update quarantined a version (reported in its heartbeat)."""
    TEST = "test"
    """``kanade notify test``: sent at once, never subscribed to."""


SUBSCRIBABLE: Final[tuple[EventKind, ...]] = tuple(k for k in EventKind if k != EventKind.TEST)
DESCRIPTIONS: Final[dict[EventKind, str]] = {
    EventKind.EXEC_FAILED: "an exec completed and at least one pc failed",
    EventKind.SCHEDULE_SKIPPED: "a schedule's fire was skipped (window, skip date, freeze, …)",
    EventKind.SCHEDULE_MISSED: "fires came due while nothing could fire them and were not run",
    EventKind.AGENT_OFFLINE: "no heartbeat from an agent for longer than offline_after",
    EventKind.ROLLOUT_HALTED: "a rollout wave exceeded its failure threshold",
    EventKind.AGENT_QUARANTINED: "an agent's self-update quarantined a version",
    EventKind.TEST: "a test notification",
}
"""What each kind means, in a line (the API's list, the dashboard's form)."""

MAX_SUMMARY: Final = 300
"""Characters of an event's one-line summary."""
MAX_TEXT: Final = 200
"""Characters of any one string in an event's details (a reason, a detail)."""
MAX_LIST: Final = 20
"""Items of any list in an event's details (pcs); the total is given beside it."""
MAX_KEY: Final = 600


def clip(text: str | None, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    if not text:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sample(items: Sequence[str], limit: int = MAX_LIST) -> list[str]:
    return [clip(str(i), 128) for i in list(items)[:limit]]


def event_id(key: str) -> str:
    """The stable id of the fact ``key`` names (32 hex characters)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Event:
    kind: EventKind
    key: str
    occurred_at: datetime
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)
    threshold_s: float | None = None
    """For :attr:`EventKind.AGENT_OFFLINE`: the ``offline_after`` it was detected with (only
    webhooks with that threshold hear of it)."""

    @property
    def id(self) -> str:
        return event_id(self.key)


def _short(exec_id: str) -> str:
    return exec_id if len(exec_id) <= 12 else exec_id[:10] + "…"


def exec_failed(
    *,
    exec_id: str,
    job_id: str,
    version: str,
    kind: str,
    failed: int,
    expected: int,
    finished: int,
    no_result: int,
    initiated_by: str,
    schedule_id: str | None,
    failed_pcs: Sequence[str],
    at: datetime,
) -> Event:
    what = "script" if kind == "adhoc" else f"job {job_id}"
    summary = f"exec {_short(exec_id)} of {what} finished: {failed} of {expected} pc(s) failed"
    if failed_pcs:
        summary += " (" + ", ".join(sample(failed_pcs, 5)) + (", …" if failed > 5 else "") + ")"
    return Event(
        EventKind.EXEC_FAILED,
        f"exec.failed:{exec_id}",
        at,
        clip(summary, MAX_SUMMARY),
        {
            "exec_id": exec_id,
            "job_id": job_id,
            "version": clip(version, 128),
            "failed": failed,
            "expected": expected,
            "finished": finished,
            "no_result": no_result,
            "initiated_by": clip(initiated_by, 128),
            "schedule_id": schedule_id,
            "failed_pcs": sample(failed_pcs),
        },
    )


def schedule_decision(
    *,
    result: str,
    schedule_id: str,
    occurrence_id: str,
    nominal_time: datetime | None,
    reason: str | None,
    detail: str | None,
    runs_on: str,
    pcs: Sequence[str] = (),
    pc_count: int = 0,
    at: datetime,
) -> Event:
    """A skipped or missed fire (``result``), decided by the central scheduler
    (``runs_on='backend'``) or reported by agents (``pcs``: who reported it)."""
    kind = EventKind.SCHEDULE_MISSED if result == "missed" else EventKind.SCHEDULE_SKIPPED
    when = format_optional(nominal_time) or "?"
    if kind == EventKind.SCHEDULE_MISSED:
        summary = f"schedule {schedule_id}: fire at {when} missed"
    else:
        summary = f"schedule {schedule_id}: fire at {when} skipped ({reason or 'no reason'})"
    if detail:
        summary += f": {detail}"
    if pc_count:
        summary += f" on {pc_count} pc(s)"
    return Event(
        kind,
        clip(f"{kind.value}:{schedule_id}:{occurrence_id}", MAX_KEY),
        at,
        clip(summary, MAX_SUMMARY),
        {
            "schedule_id": schedule_id,
            "occurrence_id": clip(occurrence_id, 255),
            "nominal_time": format_optional(nominal_time),
            "reason": clip(reason, 64) or None,
            "detail": clip(detail) or None,
            "runs_on": runs_on,
            "pcs": sample(pcs),
            "pc_count": pc_count,
        },
    )


def agent_offline(
    *,
    pc_id: str,
    hostname: str,
    last_seen: datetime,
    stopped: bool,
    threshold: timedelta,
) -> Event:
    """No heartbeat since ``last_seen`` for longer than ``threshold``; the event happens
    when the threshold is crossed (one per silence: a new heartbeat starts a new one)."""
    how = "stopped cleanly" if stopped else "no heartbeat"
    summary = (
        f"agent {pc_id} offline for more than {format_duration(threshold)} "
        f"({how} since {format_instant(last_seen)})"
    )
    return Event(
        EventKind.AGENT_OFFLINE,
        f"agent.offline:{pc_id}:{format_instant(last_seen)}:{threshold.total_seconds():g}",
        last_seen + threshold,
        clip(summary, MAX_SUMMARY),
        {
            "pc_id": pc_id,
            "hostname": clip(hostname, 255),
            "last_seen": format_instant(last_seen),
            "offline_after": format_duration(threshold),
            "stopped_cleanly": stopped,
        },
        threshold_s=threshold.total_seconds(),
    )


def rollout_halted(
    *,
    rollout_id: str,
    exec_id: str,
    job_id: str,
    version: str,
    wave: int,
    wave_count: int,
    reason: str | None,
    failure_rate: float | None,
    at: datetime,
) -> Event:
    """``wave`` is the 0-based index of the wave that halted it (shown 1-based)."""
    summary = f"rollout {_short(rollout_id)} of job {job_id} halted at wave {wave + 1}/{wave_count}"
    if reason:
        summary += f": {reason}"
    return Event(
        EventKind.ROLLOUT_HALTED,
        f"rollout.halted:{rollout_id}:{wave}",
        at,
        clip(summary, MAX_SUMMARY),
        {
            "rollout_id": rollout_id,
            "exec_id": exec_id,
            "job_id": job_id,
            "version": clip(version, 128),
            "wave": wave + 1,
            "wave_count": wave_count,
            "reason": clip(reason) or None,
            "failure_rate": failure_rate,
        },
    )


def agent_quarantined(*, pc_id: str, version: str, error: str | None, at: datetime) -> Event:
    summary = f"agent {pc_id} quarantined version {clip(version, 64)}"
    if error:
        summary += f": {error}"
    return Event(
        EventKind.AGENT_QUARANTINED,
        clip(f"agent.quarantined:{pc_id}:{version}", MAX_KEY),
        at,
        clip(summary, MAX_SUMMARY),
        {"pc_id": pc_id, "version": clip(version, 64), "error": clip(error) or None},
    )


def probe_event(*, webhook_id: str, actor: str, at: datetime, nonce: str) -> Event:
    return Event(
        EventKind.TEST,
        f"test:{webhook_id}:{nonce}",
        at,
        clip(f"test notification for webhook {webhook_id}, sent by {actor}", MAX_SUMMARY),
        {"webhook": webhook_id, "actor": clip(actor, 128)},
    )


def group_summary(kind: str, summaries: Sequence[str], total: int) -> str:
    """One line for a delivery carrying ``total`` events of ``kind``."""
    if total == 1 and summaries:
        return summaries[0]
    noun = {
        EventKind.EXEC_FAILED: "execs finished with failures",
        EventKind.SCHEDULE_SKIPPED: "scheduled fires skipped",
        EventKind.SCHEDULE_MISSED: "scheduled fires missed",
        EventKind.AGENT_OFFLINE: "agents offline",
        EventKind.ROLLOUT_HALTED: "rollouts halted",
        EventKind.AGENT_QUARANTINED: "agent versions quarantined",
    }.get(kind, f"{kind} events")  # type: ignore[call-overload]
    return f"{total} {noun}"
