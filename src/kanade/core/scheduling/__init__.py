"""The one scheduling core (SPEC §3.6, §4.4), shared by the backend's central scheduler
and the agent's local one. Pure: no I/O, no asyncio, no clock reads.

What each module holds: docs/ARCHITECTURE.md; the rules and why: docs/scheduling-core.md.
"""

from __future__ import annotations

from kanade.core.freeze import Freeze, freeze_from_json, is_frozen
from kanade.core.scheduling.ahead import AheadFire, decide_ahead, recheck_at_instant
from kanade.core.scheduling.claims import (
    Claim,
    ClaimAttempt,
    ClaimTable,
    Finish,
    claim_until,
    counts_as_success,
)
from kanade.core.scheduling.decisions import Decision, Fire, Missed, Skip, SkipReason
from kanade.core.scheduling.dedup import (
    DispatchMark,
    NextDue,
    PcDecision,
    TargetDecision,
    dispatch_mark_until,
    make_dispatch_mark,
    next_due,
    pc_decision,
    per_pc_decisions,
    per_pc_to_fire,
    per_target_decision,
    run_horizon,
)
from kanade.core.scheduling.fires import (
    FireSpan,
    fires_between,
    is_past_one_shot,
    iter_fires,
    next_fire,
    next_fires,
    one_shot_instant,
    prev_fire,
)
from kanade.core.scheduling.gates import (
    DEFAULT_LATE_TOLERANCE,
    TickOutcome,
    active_bounds,
    deadline_at,
    deadline_passed,
    decide_tick,
    gate_reason,
    next_gated_fires,
    was_down_for,
)
from kanade.core.scheduling.lowering import (
    RECONCILE_POLL,
    CalendarTrigger,
    CronTrigger,
    DedupMode,
    Plan,
    ReconcileTrigger,
    Trigger,
    lower,
    per_pc_every,
    per_pc_once,
    per_target_every,
    per_target_once,
)
from kanade.core.scheduling.occurrence import (
    exec_id_for,
    occurrence_id,
    parse_occurrence_id,
    request_id_for,
)
from kanade.core.scheduling.preview import Preview, PreviewFire, preview
from kanade.core.scheduling.successes import decode_successes, encode_successes
from kanade.core.scheduling.timezones import resolve_wall, zone_for
from kanade.core.scheduling.version import (
    agent_schedule_set,
    expected_version,
    schedule_digest,
    schedule_set_version,
)

__all__ = [
    "DEFAULT_LATE_TOLERANCE",
    "RECONCILE_POLL",
    "AheadFire",
    "CalendarTrigger",
    "Claim",
    "ClaimAttempt",
    "ClaimTable",
    "CronTrigger",
    "Decision",
    "DedupMode",
    "DispatchMark",
    "Finish",
    "Fire",
    "FireSpan",
    "Freeze",
    "Missed",
    "NextDue",
    "PcDecision",
    "Plan",
    "Preview",
    "PreviewFire",
    "ReconcileTrigger",
    "Skip",
    "SkipReason",
    "TargetDecision",
    "TickOutcome",
    "Trigger",
    "active_bounds",
    "agent_schedule_set",
    "claim_until",
    "counts_as_success",
    "deadline_at",
    "deadline_passed",
    "decide_ahead",
    "decide_tick",
    "decode_successes",
    "dispatch_mark_until",
    "encode_successes",
    "exec_id_for",
    "expected_version",
    "fires_between",
    "freeze_from_json",
    "gate_reason",
    "is_frozen",
    "is_past_one_shot",
    "iter_fires",
    "lower",
    "make_dispatch_mark",
    "next_due",
    "next_fire",
    "next_fires",
    "next_gated_fires",
    "occurrence_id",
    "one_shot_instant",
    "parse_occurrence_id",
    "pc_decision",
    "per_pc_decisions",
    "per_pc_every",
    "per_pc_once",
    "per_pc_to_fire",
    "per_target_decision",
    "per_target_every",
    "per_target_once",
    "prev_fire",
    "preview",
    "recheck_at_instant",
    "request_id_for",
    "resolve_wall",
    "run_horizon",
    "schedule_digest",
    "schedule_set_version",
    "was_down_for",
    "zone_for",
]
