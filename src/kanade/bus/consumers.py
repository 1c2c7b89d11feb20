"""Durable JetStream consumers: create one, or replace it when the broker cannot update it.

The broker updates most of a consumer's config in place, but not its storage type: it
refuses with JetStream error code 10012 (nats-py has no constant or exception class for
it), and the consumer must be deleted and created again.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from nats.js.errors import APIError, NotFoundError

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
    type differs is deleted and created again (its delivery state is lost: the caller
    must be able to absorb a replay). Other failures propagate."""
    try:
        await js.add_consumer(stream, config)
        return
    except APIError as exc:
        if not is_storage_type_immutable(exc):
            raise
    name = config.durable_name or config.name
    assert name is not None, "a durable consumer has a name"
    log.info("replacing consumer %s on %s: its storage type changed", name, stream)
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(stream, name)
    await js.add_consumer(stream, config)


async def delete_consumer(js: JetStreamContext, stream: str, name: str) -> bool:
    """Delete the durable consumer ``name`` of ``stream``; False when there was none."""
    try:
        return bool(await js.delete_consumer(stream, name))
    except NotFoundError:
        return False


__all__ = [
    "STORAGE_TYPE_IMMUTABLE",
    "add_or_replace_consumer",
    "delete_consumer",
    "is_storage_type_immutable",
]
