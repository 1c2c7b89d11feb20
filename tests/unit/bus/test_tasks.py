"""bus.tasks: a task that loses a cancel (nats-py swallows one inside its flush) is
cancelled again until it ends, within the timeout."""

from __future__ import annotations

import asyncio

from kanade.bus.tasks import cancel_and_wait


async def test_a_task_that_swallows_a_cancel_is_cancelled_again_until_it_ends() -> None:
    swallowed = 0
    waiting = asyncio.Event()

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                waiting.set()
                await asyncio.Event().wait()  # never set: only a cancel ends the wait
            except asyncio.CancelledError:
                if swallowed == 0:  # lost, as inside nats-py's _flush_pending
                    swallowed += 1
                    continue
                raise

    task = asyncio.create_task(stubborn())
    await waiting.wait()  # it runs, up to its wait
    await asyncio.wait_for(cancel_and_wait([task], timeout=5), 5)
    assert task.cancelled() and swallowed == 1
    # What the agent did before: one cancel, then wait — the task is still running.
    waiting.clear()
    again = asyncio.create_task(stubborn())
    swallowed = 0
    await waiting.wait()
    again.cancel()
    done, _ = await asyncio.wait({again}, timeout=0.3)
    assert not done
    await cancel_and_wait([again], timeout=5)
    assert again.cancelled()
