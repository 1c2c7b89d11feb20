"""Schedule preview (SPEC §4.4 ``GET /api/schedules/{id}/preview?n=10``, ``kanade schedule
preview``): the next fire times in the schedule's zone and in UTC, and — for reconcile
shapes — per pc whether it would fire now, and why not."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from kanade.core.freeze import Freeze
from kanade.core.instants import format_instant, format_local
from kanade.core.scheduling.dedup import (
    DispatchMark,
    PcDecision,
    per_pc_decisions,
    per_target_decision,
)
from kanade.core.scheduling.fires import is_past_one_shot
from kanade.core.scheduling.gates import gate_reason, next_gated_fires
from kanade.core.scheduling.lowering import Plan
from kanade.core.scheduling.timezones import to_utc, zone_name


@dataclass(frozen=True)
class PreviewFire:
    utc: datetime
    local: datetime
    """The same instant in the schedule's zone."""

    def to_dict(self) -> dict[str, str]:
        return {
            "utc": format_instant(self.utc),
            "local": format_local(self.utc, self.local.tzinfo or UTC),
        }


@dataclass(frozen=True)
class Preview:
    schedule_id: str
    tz: str
    """The zone the times are read in (``local`` resolved to the caller's zone name)."""
    fires: tuple[PreviewFire, ...]
    pcs: tuple[PcDecision, ...] = ()
    """Reconcile shapes only: one entry per targeted pc."""
    gate: str | None = None
    """Why a poll at ``now`` would be held (window, skip date, freeze…), if it would."""
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule_id": self.schedule_id,
            "tz": self.tz,
            "fires": [f.to_dict() for f in self.fires],
            "pcs": [p.to_dict() for p in self.pcs],
            "gate": self.gate,
            "warnings": list(self.warnings),
        }


def preview(
    plan: Plan,
    *,
    now: datetime,
    local_tz: tzinfo,
    n: int = 10,
    freeze: Freeze | None = None,
    pcs: Iterable[str] = (),
    alive: Collection[str] = (),
    last_success: Mapping[str, datetime] | None = None,
    marks: Mapping[str, DispatchMark] | None = None,
    last_results: Mapping[str, datetime] | None = None,
) -> Preview:
    """The next ``n`` fires after ``now`` that pass the gates, and for reconcile plans the
    per-pc decision a poll at ``now`` would make over ``pcs`` (the targeted pcs)."""
    now = to_utc(now)
    tz = plan.zone(local_tz)
    times = next_gated_fires(plan, now, local_tz, n, freeze=freeze)
    fires = tuple(PreviewFire(t, t.astimezone(tz)) for t in times)
    warnings: list[str] = []
    if is_past_one_shot(plan, now, local_tz):
        warnings.append("the one-shot time is in the past: it will never fire")
    if not plan.enabled:
        warnings.append("the schedule is disabled")
    decisions: tuple[PcDecision, ...] = ()
    gate: str | None = None
    mode = plan.dedup
    if mode is not None:
        held = gate_reason(plan, now, now=now, local_tz=local_tz, freeze=freeze)
        gate = None if held is None else held[1]
        successes = last_success or {}
        if mode.scope == "per_pc":
            decisions = tuple(
                per_pc_decisions(
                    mode,
                    pcs,
                    now=now,
                    alive=alive,
                    last_success=successes,
                    marks=marks,
                    last_results=last_results,
                )
            )
        else:
            decisions = per_target_decision(
                mode,
                pcs,
                now=now,
                alive=alive,
                last_success=successes,
                marks=marks,
                last_results=last_results,
            ).pcs
    return Preview(
        schedule_id=plan.schedule_id,
        tz=zone_name(tz),
        fires=fires,
        pcs=decisions,
        gate=gate,
        warnings=tuple(warnings),
    )
