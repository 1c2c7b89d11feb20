"""What the API shows about schedules: status rows, previews and schedule-set drift.
Pure functions over data the routes read (catalog, DB rows, KV marks)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from kanade.backend.store.scheduling import ReconcileFacts
from kanade.core.fleet import agent_status
from kanade.core.instants import format_instant, format_local, format_optional
from kanade.core.models.schedule import Schedule
from kanade.core.scheduling import (
    RECONCILE_POLL,
    DispatchMark,
    Freeze,
    Plan,
    agent_schedule_set,
    lower,
    next_gated_fires,
    preview,
    schedule_set_version,
)
from kanade.core.scheduling.dedup import NextDue, next_due
from kanade.core.scheduling.preview import Preview
from kanade.core.scheduling.timezones import zone_name

_TINY = timedelta(microseconds=1)

STATUS_SCAN = 2_000
"""Raw fires examined for a "next fire" column (gates like windows and skip dates rarely
need more; a schedule whose gates stay shut that long shows no next fire)."""


def next_gated(
    plan: Plan,
    now: datetime,
    local_tz: tzinfo,
    n: int,
    freeze: Freeze | None,
    *,
    max_scan: int = STATUS_SCAN,
) -> list[datetime]:
    """:func:`next_gated_fires`, bounded: a freeze in force jumps to its end (an open-ended
    one has no next fire), and a scan that runs off the calendar ends the list."""
    after = now
    if freeze is not None and freeze.covers(now):
        if freeze.until is None:
            return []
        after = max(now, freeze.until - timedelta(microseconds=1))
    try:
        return next_gated_fires(plan, after, local_tz, n, freeze=freeze, max_scan=max_scan)
    except (OverflowError, ValueError):  # e.g. a cron walked past year 9999
        return []


@dataclass(frozen=True)
class NextFire:
    at: datetime | None
    note: str | None = None
    """Why there is no next fire, or what it waits for (reconcile shapes)."""


def _first_poll_from(
    plan: Plan, instant: datetime, local_tz: tzinfo, freeze: Freeze | None
) -> datetime | None:
    found = next_gated(plan, instant - _TINY, local_tz, 1, freeze)
    return found[0] if found else None


def reconcile_next_fire(
    plan: Plan, due: NextDue, *, now: datetime, local_tz: tzinfo, freeze: Freeze | None
) -> NextFire:
    """When a reconcile schedule really fires next: its next poll only if some targeted
    pc is due now; else the poll at which the earliest pc becomes due again (its last
    success plus ``every``, or its dispatch mark ending); else none, saying why (every pc
    ran it once, pcs offline, nobody targeted). A bare "next poll" would promise a fire
    every minute that never happens."""
    if not due.targeted:
        return NextFire(None, "no targeted pc has reported yet; it fires when one does")
    if due.now:
        upcoming = next_gated(plan, now, local_tz, 1, freeze)
        return NextFire(upcoming[0] if upcoming else None)
    waiting = f"; {due.offline} offline pc(s) fire when they come back" if due.offline else ""
    if due.at is not None:
        return NextFire(_first_poll_from(plan, max(now, due.at), local_tz, freeze),
                        f"when the earliest pc is due again{waiting}")
    if due.offline:
        return NextFire(None, f"nothing due now; {due.offline} offline pc(s) fire when they "
                              "come back")
    if plan.dedup is not None and plan.dedup.scope == "per_target":
        return NextFire(None, "done: a member succeeded (once); it fires again only if "
                              "the schedule is replaced")
    return NextFire(None, "done: every targeted pc succeeded once; a pc that joins the "
                          "target fires")


@dataclass(frozen=True)
class Fleet:
    """Every agent's groups, and which agents are alive, read once for many schedules."""

    groups: dict[str, list[str]]
    alive: frozenset[str]

    @classmethod
    def of(cls, agents: Iterable[Mapping[str, Any]], now: datetime) -> Fleet:
        known = {str(a["pc_id"]): a for a in agents}
        alive = frozenset(
            pc
            for pc, a in known.items()
            if a.get("last_seen")
            and agent_status(a["last_seen"], now, stopped=a.get("stopped_at") is not None)
            == "alive"
        )
        return cls({pc: list(a.get("groups") or []) for pc, a in known.items()}, alive)


def reconcile_decisions(
    schedule: Schedule,
    plan: Plan,
    *,
    now: datetime,
    local_tz: tzinfo,
    freeze: Freeze | None,
    fleet: Fleet,
    facts: ReconcileFacts | None,
    marks: Mapping[str, DispatchMark],
) -> tuple[list[str], Preview]:
    """The targeted pcs and the preview at ``now`` without fire times: for reconcile shapes,
    what a poll decides for each pc."""
    target = schedule.target
    pcs = sorted(
        {pc for pc, groups in fleet.groups.items() if target.matches(pc, groups)}
        | set(target.pcs)
    )
    facts = facts or ReconcileFacts({}, {})
    result = preview(
        plan,
        now=now,
        local_tz=local_tz,
        n=0,
        freeze=freeze,
        pcs=pcs if plan.is_reconcile else (),
        alive=fleet.alive,
        last_success=facts.last_success,
        marks=marks,
        last_results=facts.last_result,
    )
    return pcs, result


def reconcile_due(
    schedule: Schedule,
    plan: Plan,
    *,
    now: datetime,
    fleet: Fleet,
    facts: ReconcileFacts | None,
    marks: Mapping[str, DispatchMark],
) -> NextDue | None:
    """When a reconcile schedule next has a pc to fire (None for calendar and cron)."""
    mode = plan.dedup
    if mode is None:
        return None
    target = schedule.target
    if target.all:
        pcs = set(fleet.groups)
    else:
        pcs = {pc for pc, groups in fleet.groups.items() if target.matches(pc, groups)}
    facts = facts or ReconcileFacts({}, {})
    return next_due(mode, pcs | set(target.pcs), now=now, alive=fleet.alive,
                    last_success=facts.last_success, marks=marks,
                    last_results=facts.last_result)  # fmt: skip


def schedule_status(
    schedule: Schedule,
    stats: Mapping[str, Any] | None,
    *,
    now: datetime,
    local_tz: tzinfo,
    freeze: Freeze | None,
    reconcile_poll: timedelta = RECONCILE_POLL,
    due: NextDue | None = None,
) -> dict[str, Any]:
    """Next fire (gated: window, skip dates, freeze, active), last fire and counters. For a
    reconcile shape with its ``due`` (:func:`reconcile_due`), the next fire is when a pc
    really is due (:func:`reconcile_next_fire`), not merely the next poll."""
    plan = lower(schedule, reconcile_poll=reconcile_poll)
    tz = plan.zone(local_tz)
    note: str | None = None
    if plan.is_reconcile and due is not None and schedule.enabled:
        found = reconcile_next_fire(plan, due, now=now, local_tz=local_tz, freeze=freeze)
        nxt, note = found.at, found.note
    else:
        upcoming = next_gated(plan, now, local_tz, 1, freeze)
        nxt = upcoming[0] if upcoming else None
    if not schedule.enabled:
        note = "disabled"
    stats = stats or {}
    return {
        "enabled": schedule.enabled,
        "shape": schedule.when.shape,
        "runs_on": schedule.runs_on,
        "tz": zone_name(tz),
        "frozen": freeze is not None and freeze.covers(now),
        "next_fire": format_optional(nxt),
        "next_fire_local": None if nxt is None else format_local(nxt, tz),
        "next_fire_note": note,
        "last_fire": format_optional(stats.get("last_fire_at")),
        "last_nominal": format_optional(stats.get("last_nominal")),
        "last_exec_id": stats.get("last_exec_id"),
        "fired_count": int(stats.get("fired") or 0),
        "skipped_count": int(stats.get("skipped") or 0),
        "missed_count": int(stats.get("missed") or 0),
    }


def combined_stats(
    backend: Mapping[str, Any] | None, agents: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """One schedule's counters and last fire: the central scheduler's and the agents' added
    up (a schedule fires on one side at a time, but may have switched ``runs_on``)."""
    if not agents:
        return dict(backend) if backend else None
    out = dict(backend or {})
    for k in ("fired", "skipped", "missed"):
        out[k] = int(out.get(k) or 0) + int(agents.get(k) or 0)
    mine, theirs = out.get("last_fire_at"), agents.get("last_fire_at")
    if theirs is not None and (mine is None or theirs > mine):
        out |= {
            "last_fire_at": theirs,
            "last_nominal": agents.get("last_nominal"),
            "last_exec_id": None,  # each agent runs it under its own request id
        }
    return out


def merged_decisions(
    backend: Sequence[Mapping[str, Any]], agents: Sequence[Mapping[str, Any]], limit: int
) -> list[Mapping[str, Any]]:
    """The newest ``limit`` decisions of both sides, newest first."""
    rows = [*backend, *agents]
    rows.sort(key=lambda r: r.get("decided_at") or datetime.min.replace(tzinfo=UTC), reverse=True)
    return rows[:limit]


def decision_view(row: Mapping[str, Any]) -> dict[str, Any]:
    if row.get("pc_id") is not None:  # an agent's local scheduler
        return {
            "decided_at": format_optional(row.get("decided_at")),
            "nominal_time": format_optional(row.get("nominal_time")),
            "occurrence_id": row.get("occurrence_id"),
            "result": row.get("result"),
            "reason": row.get("reason"),
            "detail": row.get("detail"),
            "exec_id": None,
            "pcs": 1,
            "lateness_s": None,
            "pc_id": row.get("pc_id"),
        }
    return {
        "decided_at": format_optional(row.get("decided_at")),
        "nominal_time": format_optional(row.get("nominal_time")),
        "occurrence_id": row.get("occurrence_id"),
        "result": row.get("result"),
        "reason": row.get("reason"),
        "detail": row.get("detail"),
        "exec_id": row.get("exec_id"),
        "pcs": row.get("pcs"),
        "lateness_s": row.get("lateness_s"),
    }


def schedule_preview(
    schedule: Schedule,
    *,
    now: datetime,
    local_tz: tzinfo,
    n: int,
    freeze: Freeze | None,
    agents: Iterable[Mapping[str, Any]],
    facts: ReconcileFacts | None,
    marks: Mapping[str, DispatchMark],
    reconcile_poll: timedelta = RECONCILE_POLL,
) -> dict[str, Any]:
    """``GET /api/schedules/{id}/preview``: the next ``n`` gated fires (UTC and the
    schedule's zone) and, for reconcile shapes, every targeted pc with ``would_fire`` and
    the reason (alive, dispatched, last success)."""
    plan = lower(schedule, reconcile_poll=reconcile_poll)
    facts = facts or ReconcileFacts({}, {})
    fleet = Fleet.of(agents, now)
    alive = fleet.alive
    pcs, result = reconcile_decisions(
        schedule, plan, now=now, local_tz=local_tz, freeze=freeze, fleet=fleet, facts=facts,
        marks=marks,
    )
    body = result.to_dict()
    tz = plan.zone(local_tz)
    # A disabled schedule previews the times it would fire once enabled, each marked:
    # operators preview before they enable.
    timing = plan if schedule.enabled else lower(
        schedule.model_copy(update={"enabled": True}), reconcile_poll=reconcile_poll
    )
    body["fires"] = [
        {"utc": format_instant(t), "local": format_local(t, tz), "disabled": not schedule.enabled}
        for t in next_gated(timing, now, local_tz, n, freeze, max_scan=max(STATUS_SCAN, 50 * n))
    ]
    due = reconcile_due(schedule, plan, now=now, fleet=fleet, facts=facts, marks=marks)
    if due is not None and schedule.enabled:
        found = reconcile_next_fire(plan, due, now=now, local_tz=local_tz, freeze=freeze)
        body["next_fire"] = format_optional(found.at)
        body["next_fire_note"] = found.note
    body["frozen"] = freeze is not None and freeze.covers(now)
    body["shape"] = schedule.when.shape
    body["runs_on"] = schedule.runs_on
    body["enabled"] = schedule.enabled
    body["now"] = format_optional(now)
    for pc in body["pcs"]:
        pid = pc["pc_id"]
        mark = marks.get(pid)
        pc["alive"] = pid in alive
        pc["last_success"] = format_optional(facts.last_success.get(pid))
        pc["dispatched_until"] = (
            format_optional(mark.until)
            if mark is not None and mark.blocks(now, facts.last_result.get(pid))
            else None
        )
    if not plan.is_reconcile:
        body["target_pcs"] = pcs
        body["target_alive"] = sorted(set(pcs) & alive)
    return body


def drift_rows(
    schedules: list[Schedule], agents: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Per agent: the schedule-set version the backend expects it to have applied (enabled
    ``runs_on: agent`` schedules targeting it, by its current groups) against the one it
    reports in heartbeats. ``drift`` is true until they match."""
    out: list[dict[str, Any]] = []
    for a in agents:
        pc = str(a["pc_id"])
        groups = list(a.get("groups") or [])
        expected_set = agent_schedule_set(schedules, pc, groups)
        expected = schedule_set_version(expected_set)
        applied = a.get("schedule_set_version")
        out.append(
            {
                "pc_id": pc,
                "groups": groups,
                "expected_version": expected,
                "applied_version": applied,
                "drift": applied != expected,
                "expected_schedules": [s.id for s in expected_set],
            }
        )
    return out
