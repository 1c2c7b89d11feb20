"""The backend's durable pull consumers and a batching loop over them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from kanade.bus.pull import PullConsumer

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ConsumerSpec:
    stream: str
    durable: str
    filter_subjects: tuple[str, ...]
    # Messages delivered but not yet acked, across all batches in flight. Large, so
    # a fan-out burst is pulled in big batches rather than throttled by the broker.
    max_ack_pending: int = 20_000
    # A batch is acked right after its commit; this only matters when the backend
    # died mid-batch (then the broker redelivers after it).
    ack_wait_s: float = 30.0

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            name=self.durable,
            durable_name=self.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_ack_pending=self.max_ack_pending,
            filter_subjects=list(self.filter_subjects),
        )


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec, *, reset: bool) -> None:
    """Create (or update) the durable consumer; ``reset`` replays the stream from the start.

    A consumer the broker refuses to update (a drifted non-editable field) is
    recreated: projection is idempotent, so replaying costs time, never correctness,
    and a config drift must not stop the backend from starting.
    """
    if reset:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(spec.stream, spec.durable)
            log.warning("consumer reset, re-projecting", consumer=spec.durable, stream=spec.stream)
    try:
        await js.add_consumer(spec.stream, spec.config())
    except APIError as exc:
        log.warning("consumer config refused, recreating", consumer=spec.durable, error=str(exc))
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(spec.stream, spec.durable)
        await js.add_consumer(spec.stream, spec.config())


BatchHandler = Callable[[list[Msg]], Awaitable[None]]


async def consume_in_batches(
    nc: Client,
    spec: ConsumerSpec,
    handle: BatchHandler,
    *,
    batch_max: int = 5000,
    window: int = 10000,
) -> None:
    """Feed ``handle`` batches from the consumer until cancelled.

    The first message of a batch is handed over the moment it arrives (low
    latency when idle); everything that piled up meanwhile joins it, up to
    ``batch_max`` (throughput under load: the batch grows while the previous
    one commits). ``handle`` owns acking.
    """
    pull = PullConsumer(nc, spec.stream, spec.durable, window=window)
    try:
        async for first in pull.messages():
            batch = [first, *pull.drain_ready(batch_max - 1)]
            await handle(batch)
    finally:
        await pull.close()


async def nak_all(msgs: list[Msg], delay_s: float) -> None:
    """Hand a batch back to the broker for redelivery after ``delay_s``."""
    for msg in msgs:
        with contextlib.suppress(Exception):  # connection gone: ack_wait redelivers anyway
            await msg.nak(delay=delay_s)


async def ack_all(msgs: list[Msg]) -> None:
    for msg in msgs:
        with contextlib.suppress(Exception):  # lost ack = a harmless idempotent redelivery
            await msg.ack()


async def run_forever(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run ``loop`` again after any failure (broker away, consumer deleted) with backoff."""
    delay = 0.2
    while True:
        try:
            await loop()
            delay = 0.2
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task failed, restarting", task=name, delay_s=delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)
