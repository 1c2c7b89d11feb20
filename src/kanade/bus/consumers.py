"""Durable JetStream consumers: create one, or replace it when the broker cannot update it.

The broker updates most of a consumer's config in place, but not its storage type: it
refuses with JetStream error code 10012 (nats-py has no constant or exception class for
it), and the consumer must be deleted and created again.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Final

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from kanade.core import subjects

log = logging.getLogger(__name__)

STORAGE_TYPE_IMMUTABLE: Final = 10012
"""JetStream's error code for "consumer storage type can not be updated"."""


def is_storage_type_immutable(exc: BaseException) -> bool:
    """Whether a create/update of a consumer was refused because its storage changed."""
    return isinstance(exc, APIError) and exc.err_code == STORAGE_TYPE_IMMUTABLE


async def add_or_replace_consumer(
    js: JetStreamContext, stream: str, config: ConsumerConfig
) -> None:
    """Create or update the durable consumer ``config`` on ``stream``; one whose storage
    type differs, or whose only copy is on a cluster node that is down, is deleted and
    created again (its delivery state is lost: the caller must be able to absorb a
    replay). Other failures propagate."""
    name = config.durable_name or config.name
    assert name is not None, "a durable consumer has a name"
    try:
        await js.add_consumer(stream, config)
        return
    except APIError as exc:
        if not is_storage_type_immutable(exc):
            raise
        log.info("replacing consumer %s on %s: its storage type changed", name, stream)
    except nats.errors.TimeoutError:
        # On a cluster: the consumer exists, but its only copy is on a node that is down.
        log.warning("consumer %s on %s unreachable (its node is down); replacing it",
                    name, stream)  # fmt: skip
    with contextlib.suppress(NotFoundError, nats.errors.TimeoutError):
        await js.delete_consumer(stream, name)
    await js.add_consumer(stream, config)


def _filters(config: ConsumerConfig) -> set[str]:
    listed = config.filter_subjects or ([config.filter_subject] if config.filter_subject else [])
    return set(listed)


async def add_or_widen_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig) -> bool:
    """:func:`add_or_replace_consumer`, except that a consumer that would read a subject
    it did not read before is deleted and created afresh; True when that happened.

    Updated in place, a consumer starts reading a new filter subject at its current
    position, so the messages already stored on that subject are never delivered (the
    broker does not go back). Created afresh, its deliver policy replays them; the caller
    must absorb that replay (an agent: its ledger, and its membership-since check for the
    group it just joined, SPEC §3.2)."""
    name = config.durable_name or config.name
    assert name is not None, "a durable consumer has a name"
    widened = False
    try:
        info = await js.consumer_info(stream, name)
    except NotFoundError:
        pass
    except nats.errors.TimeoutError:
        # On a cluster: the consumer's only copy is on a node that is down (nobody
        # answers for it). Replace it on a live node; its replays are absorbed as above.
        log.warning("consumer %s on %s unreachable (its node is down); replacing it",
                    name, stream)  # fmt: skip
        with contextlib.suppress(NotFoundError, nats.errors.TimeoutError):
            await js.delete_consumer(stream, name)
        widened = True
    else:
        if _filters(config) - _filters(info.config):
            widened = await delete_consumer(js, stream, name)
    await add_or_replace_consumer(js, stream, config)
    return widened


def agent_command_consumer(pc_id: str, groups: list[str] | tuple[str, ...]) -> ConsumerConfig:
    """The one durable command consumer of agent ``pc_id``: all, its groups, its pc.

    Its state (delivered/acked positions) lives in the broker's memory, not on its disk:
    with one consumer per agent, a file-backed state costs the broker a file rewrite per
    agent per command (at 10 000 agents that disk traffic, not CPU, bounded a fan-out; see
    docs/performance.md). Nothing depends on that state surviving: the commands stay in the
    file-backed stream and "already admitted" is decided by the agent's fsync'd ledger, so a
    consumer dropped by a broker restart is re-created and its replays acked as duplicates.

    One copy, also on a cluster (SPEC §9): a replicated consumer is a Raft group of its own
    on three nodes, and ten thousand of them kept a 2-core machine's disks and CPUs busy
    with their logs (docs/deploy.md). The stream holding the commands is replicated; the
    consumer is disposable: when its node dies, the agent's pull gets "no responders", it
    asks for its consumer again and :func:`add_or_widen_consumer` replaces the unreachable
    one on a live node.
    """
    name = subjects.agent_consumer_name(pc_id)
    return ConsumerConfig(
        name=name,
        durable_name=name,
        filter_subjects=subjects.agent_command_filters(pc_id, groups),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=30.0,
        max_ack_pending=1000,
        # An agent that never comes back stops costing the broker after 30 days.
        inactive_threshold=30 * 86400.0,
        mem_storage=True,
        num_replicas=1,
    )


async def delete_consumer(js: JetStreamContext, stream: str, name: str) -> bool:
    """Delete the durable consumer ``name`` of ``stream``; False when there was none."""
    try:
        return bool(await js.delete_consumer(stream, name))
    except NotFoundError:
        return False


__all__ = [
    "STORAGE_TYPE_IMMUTABLE",
    "add_or_replace_consumer",
    "add_or_widen_consumer",
    "agent_command_consumer",
    "delete_consumer",
    "is_storage_type_immutable",
]
