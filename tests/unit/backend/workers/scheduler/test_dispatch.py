"""The dispatcher's publish retry: attempt counts and the final-failure log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import cast

from structlog.testing import capture_logs

from kanade.backend.workers.scheduler.building import Planned
from kanade.backend.workers.scheduler.dispatch import _retried

PLANNED = cast(
    Planned,
    SimpleNamespace(
        record=SimpleNamespace(exec_id="e1"),
        entry=SimpleNamespace(schedule=SimpleNamespace(id="s")),
    ),
)


def flaky(failures: int) -> tuple[list[int], Callable[[], Awaitable[None]]]:
    calls: list[int] = []

    async def step() -> None:
        calls.append(1)
        if len(calls) <= failures:
            raise ConnectionError("broker away")

    return calls, step


async def test_a_step_that_succeeds_on_its_last_attempt_counts_as_published() -> None:
    calls, step = flaky(failures=2)
    with capture_logs() as logs:
        assert await _retried(PLANNED, "commands", step, attempts=3)
    assert len(calls) == 3
    assert not [e for e in logs if e["log_level"] == "error"]


async def test_a_step_failing_every_attempt_is_logged_once_and_reported() -> None:
    calls, step = flaky(failures=10)
    with capture_logs() as logs:
        assert not await _retried(PLANNED, "record", step, attempts=2)
    assert len(calls) == 2
    errors = [e for e in logs if e["log_level"] == "error"]
    assert errors == [
        {
            "event": "scheduled fire not published",
            "log_level": "error",
            "step": "record",
            "exec_id": "e1",
            "schedule_id": "s",
            "error": "broker away",
        }
    ]
