"""Shared builders for the scheduler's unit tests: schedules, entries, a context whose
database and bus are never touched (the code under test does no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from prometheus_client import CollectorRegistry

from kanade.backend.store.database import Database
from kanade.backend.workers.scheduler.catalog_watch import Entry
from kanade.backend.workers.scheduler.context import SchedulerContext
from kanade.backend.workers.scheduler.metrics import SchedulerMetrics
from kanade.bus.connection import Bus
from kanade.core.dispatch import Budgets
from kanade.core.models.schedule import Schedule
from kanade.core.scheduling import DEFAULT_LATE_TOLERANCE, RECONCILE_POLL, lower
from kanade.core.validation import parse_schedule

NOW = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)


def schedule(sid: str = "s", **fields: Any) -> Schedule:
    doc: dict[str, Any] = {"id": sid, "job_id": "hello", "target": {"all": True}, "tz": "utc"}
    doc.update(fields)
    return parse_schedule(doc)


def entry(s: Schedule, next_due: datetime | None, last_tick: datetime = NOW) -> Entry:
    return Entry(s, lower(s), last_tick, next_due)


def context(*, prepare_ahead: timedelta = timedelta(0)) -> SchedulerContext:
    def unused() -> Bus:
        raise AssertionError("no bus in a unit test")

    return SchedulerContext(
        db=cast(Database, None),
        bus=unused,
        budgets=Budgets(),
        metrics=SchedulerMetrics(CollectorRegistry()),
        clock=lambda: NOW,
        local_tz=UTC,
        reconcile_poll=RECONCILE_POLL,
        late_tolerance=DEFAULT_LATE_TOLERANCE,
        prepare_ahead=prepare_ahead,
    )
