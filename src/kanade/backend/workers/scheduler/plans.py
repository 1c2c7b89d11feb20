"""How the backend reads a schedule: its plan (with the backend's reconcile poll) and the
zone ``tz: local`` means on this machine."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kanade.core.models.schedule import Schedule
from kanade.core.scheduling import RECONCILE_POLL, Plan, ReconcileTrigger, lower


@cache
def backend_local_zone() -> tzinfo:
    """The backend machine's zone for ``tz: local`` schedules: ``$TZ``, else the zone
    ``/etc/localtime`` links to, else the current fixed offset (no DST knowledge)."""
    candidates: list[str] = []
    env = os.environ.get("TZ", "").lstrip(":")
    if env:
        candidates.append(env)
    try:
        target = str(Path("/etc/localtime").resolve())
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return datetime.now(UTC).astimezone().tzinfo or UTC


def plan_for(schedule: Schedule, reconcile_poll: timedelta = RECONCILE_POLL) -> Plan:
    """:func:`kanade.core.scheduling.lower`, with the reconcile poll set to the backend's
    (one minute unless configured; tests shorten it)."""
    plan = lower(schedule)
    trigger = plan.trigger
    if isinstance(trigger, ReconcileTrigger) and trigger.poll != reconcile_poll:
        plan = dataclasses.replace(plan, trigger=ReconcileTrigger(trigger.mode, reconcile_poll))
    return plan


def shape_of(schedule: Schedule) -> str:
    return schedule.when.shape
