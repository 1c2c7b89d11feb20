"""The worker base: interval, wake-up, more-work, backoff after failures, teardown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from kanade import worker as base
from kanade.worker import Worker
from polling import eventually


class Recorder(Worker):
    def __init__(self, *, interval: float, plan: list[object]) -> None:
        super().__init__(interval=interval)
        self.plan = plan
        self.steps = 0
        self.torn_down = False
        self.done = asyncio.Event()

    async def step(self) -> bool | None:
        self.steps += 1
        action = self.plan.pop(0) if self.plan else None
        if not self.plan:
            self.done.set()
        if isinstance(action, Exception):
            raise action
        return action  # type: ignore[return-value]

    async def teardown(self) -> None:
        self.torn_down = True


def _ran(w: Recorder) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return w.steps >= 1

    return check


async def _run_until_done(w: Recorder, timeout: float = 5.0) -> None:
    task = asyncio.create_task(w.run())
    try:
        await asyncio.wait_for(w.done.wait(), timeout)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_more_work_runs_the_next_step_at_once() -> None:
    w = Recorder(interval=3600, plan=[True, True, True, None])
    await _run_until_done(w)
    assert w.steps == 4
    assert w.torn_down


async def test_wake_cuts_the_interval_short() -> None:
    w = Recorder(interval=3600, plan=[None, None])
    task = asyncio.create_task(w.run())
    try:
        await eventually(_ran(w), "first step")
        w.wake()
        await asyncio.wait_for(w.done.wait(), 5)
        assert w.steps == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_failing_step_is_retried_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "BACKOFF_MIN_S", 0.01)
    w = Recorder(interval=3600, plan=[RuntimeError("db locked"), RuntimeError("again"), None])
    assert w.next_delay(None, failed=False) == 3600
    await _run_until_done(w)
    assert w.steps == 3  # the loop survived two failures


def test_backoff_doubles_and_is_capped() -> None:
    w = Recorder(interval=1, plan=[])
    delays = []
    for n in range(1, 12):
        w._failures = n
        delays.append(w.next_delay(None, failed=True))
    assert delays[0] == base.BACKOFF_MIN_S
    assert delays[1] == 2 * base.BACKOFF_MIN_S
    assert max(delays) == base.BACKOFF_MAX_S


async def test_stop_ends_the_loop_and_tears_down() -> None:
    w = Recorder(interval=3600, plan=[None, None, None])
    task = asyncio.create_task(w.run())
    await eventually(_ran(w), "first step")
    w.stop()
    await asyncio.wait_for(task, 5)
    assert w.torn_down


async def test_cancellation_at_the_moment_of_a_wake_up_ends_the_loop() -> None:
    """asyncio.wait_for (3.11) swallows a cancellation that meets its inner wait's
    completion; the pause must not, or the agent's shutdown waits forever for the loop."""
    w = Recorder(interval=3600, plan=[None, None, None])
    task = asyncio.create_task(w.run())
    await eventually(_ran(w), "first step")
    w.wake()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert w.steps == 1 and w.torn_down
