"""A lowered schedule plan from a few fields: shared by the scheduling-core unit tests."""

from __future__ import annotations

from typing import Any

from kanade.core.scheduling import Plan, lower
from kanade.core.validation import parse_schedule


def plan_of(when: dict[str, Any] | None = None, **extra: Any) -> Plan:
    doc: dict[str, Any] = {
        "id": "s1",
        "job_id": "j1",
        "when": when or {"cron": "0 * * * *"},
        "target": {"all": True},
        "tz": "utc",
    }
    doc.update(extra)
    return lower(parse_schedule(doc))
