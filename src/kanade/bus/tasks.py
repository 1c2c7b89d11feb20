"""Stopping asyncio tasks that run nats-py code: one ``cancel()`` is not always enough."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], *, timeout: float = 10.0) -> None:
    """Cancel ``tasks`` and wait for them to end, cancelling again while they run.

    A single ``cancel()`` is not enough: nats-py 2.16 swallows CancelledError inside
    ``Client._flush_pending`` (reached from publish, subscribe and acks), so a
    cancellation landing there is lost and the task carries on — while the broker is
    unreachable, for ever: an agent stopped then ignored SIGTERM. Re-cancelling until
    the task is done makes shutdown reliable.
    """
    tasks = list(tasks)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    pending = [t for t in tasks if not t.done()]
    while pending and loop.time() < give_up:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)
        pending = [t for t in pending if not t.done()]
    if pending:
        log.warning("tasks did not stop: %s", ", ".join(t.get_name() for t in pending))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("task %s ended with an error: %s", task.get_name(), task.exception())
