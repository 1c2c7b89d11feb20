"""The backend's durable pull consumers and how their messages arrive in batches.

The projection consumers are declared here (their workers in
:mod:`kanade.backend.workers.projection` consume them, ``/metrics`` reports their lag);
:class:`BatchSource` hands a worker one batch per step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from kanade.bus.connection import Bus
from kanade.bus.pull import PullConsumer
from kanade.core import subjects

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


RESULTS_CONSUMER = ConsumerSpec(
    stream=subjects.STREAM_RESULTS,
    durable="projector-results",
    filter_subjects=(subjects.RESULTS_ALL, subjects.STARTED_ALL),
)
EXECS_CONSUMER = ConsumerSpec(
    stream=subjects.STREAM_EXECS,
    durable="projector-execs",
    # created records, and status records an operator's decision produced
    # (kanade.exec.cancelled.<id>, …): both must survive a rebuild of the DB.
    filter_subjects=(subjects.EXECS_ALL,),
)
AUDIT_CONSUMER = ConsumerSpec(
    stream=subjects.STREAM_AUDIT,
    durable="projector-audit",
    filter_subjects=(subjects.AUDIT_ALL,),
)
DECISIONS_CONSUMER = ConsumerSpec(
    stream=subjects.STREAM_DECISIONS,
    durable="projector-decisions",
    filter_subjects=(subjects.DECISIONS_ALL,),
)
PROJECTION_CONSUMERS: tuple[ConsumerSpec, ...] = (
    RESULTS_CONSUMER,
    EXECS_CONSUMER,
    AUDIT_CONSUMER,
    DECISIONS_CONSUMER,
)


async def replayed(js: JetStreamContext, specs: tuple[ConsumerSpec, ...], *, poll_s: float) -> None:
    """Return once every consumer of ``specs`` has acked all its stream held at the call:
    the database a replay is rebuilding has caught up with what happened before it."""
    targets = {spec.durable: (spec, (await js.stream_info(spec.stream)).state.last_seq)
               for spec in specs}  # fmt: skip
    while targets:
        for name, (spec, target) in list(targets.items()):
            info = await js.consumer_info(spec.stream, spec.durable)
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            if (floor or 0) >= target or (not info.num_pending and not info.num_ack_pending):
                del targets[name]
        if targets:
            await asyncio.sleep(poll_s)


class BatchSource:
    """Batches from one durable consumer, opened on first use and after :meth:`close`.

    The first message of a batch is handed over the moment it arrives (low
    latency when idle); everything that piled up meanwhile joins it, up to
    ``batch_max`` (throughput under load: the batch grows while the previous
    one commits). The caller owns acking.
    """

    def __init__(
        self, bus: Bus, spec: ConsumerSpec, *, batch_max: int = 5000, window: int = 10000
    ) -> None:
        self._bus = bus
        self.spec = spec
        self._batch_max = batch_max
        self._window = window
        self._pull: PullConsumer | None = None
        self._messages: AsyncIterator[Msg] | None = None

    async def next_batch(self) -> list[Msg]:
        """Wait for the next batch; any failure closes the source (reopened next call)."""
        try:
            if self._pull is None or self._messages is None:
                await ensure_consumer(self._bus.js, self.spec, reset=False)
                self._pull = PullConsumer(
                    self._bus.nc, self.spec.stream, self.spec.durable, window=self._window
                )
                self._messages = aiter(self._pull.messages())
            first = await anext(self._messages)
            return [first, *self._pull.drain_ready(self._batch_max - 1)]
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Release the pull subscription; unacked messages are redelivered after ack_wait."""
        pull, messages = self._pull, self._messages
        self._pull = self._messages = None
        if pull is not None:
            await pull.close()
        if messages is not None and hasattr(messages, "aclose"):
            with contextlib.suppress(Exception):
                await messages.aclose()


async def nak_all(msgs: list[Msg], delay_s: float) -> None:
    """Hand a batch back to the broker for redelivery after ``delay_s``."""
    for msg in msgs:
        with contextlib.suppress(Exception):  # connection gone: ack_wait redelivers anyway
            await msg.nak(delay=delay_s)


async def ack_all(msgs: list[Msg]) -> None:
    for msg in msgs:
        with contextlib.suppress(Exception):  # lost ack = a harmless idempotent redelivery
            await msg.ack()
