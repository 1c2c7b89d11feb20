"""What every part of one central scheduler shares: its connections, its settings (some
settable on a running scheduler) and its counters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta, tzinfo

from kanade.backend.store.database import Database
from kanade.backend.workers.scheduler.metrics import SchedulerMetrics
from kanade.bus.connection import Bus
from kanade.core.dispatch import Budgets
from kanade.core.instants import Clock


@dataclass
class SchedulerContext:
    db: Database
    bus: Callable[[], Bus]
    budgets: Budgets
    metrics: SchedulerMetrics
    clock: Clock
    local_tz: tzinfo
    reconcile_poll: timedelta
    late_tolerance: timedelta
    prepare_ahead: timedelta
    """How long before its instant a fire is prepared (0 = never: every fire is decided,
    built and claimed at its instant). Read at every pass, so it may be changed while the
    scheduler runs."""
    ticks: int = 0
    """Ticks so far (ordinary ones and instants of prepared fires)."""
