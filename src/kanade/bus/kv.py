"""KV buckets as NATS messages: subjects, stream names and change decoding, in one place.

Every KV write is a JetStream message on ``$KV.<bucket>.<key>`` in stream ``KV_<bucket>``; a
delete or purge is a message whose ``KV-Operation`` header says so. Processes that follow a
bucket live (a plain core-NATS subscription, no consumer) or publish KV puts pipelined need
those details; they take them from here, built on nats-py's own constants, never as
hand-written ``$KV.`` strings or ``"DEL"`` literals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.client import KV_PRE_TEMPLATE, KV_STREAM_TEMPLATE
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE

from kanade.core.signing import KV_PUT as SIGNED_KV_PUT

DELETE_OPERATIONS: Final = frozenset({KV_DEL, KV_PURGE})
"""``KV-Operation`` values (and ``KeyValue.Entry.operation`` values) that remove a key."""


def kv_prefix(bucket: str) -> str:
    """``$KV.<bucket>.``: every key's subject starts with it."""
    return KV_PRE_TEMPLATE.format(bucket=bucket)


def kv_subject(bucket: str, key: str) -> str:
    """The subject a put of ``key`` is published on (what ``KeyValue.put`` does), for
    publishing many puts pipelined; also a subscription filter when ``key`` has wildcards
    (``>``, ``*``)."""
    return kv_prefix(bucket) + key


def kv_stream(bucket: str) -> str:
    """The JetStream stream behind ``bucket``."""
    return KV_STREAM_TEMPLATE.format(bucket=bucket)


def kv_key(bucket: str, subject: str) -> str:
    """The key a message on ``subject`` of ``bucket`` is about; ``ValueError`` when the
    subject is not in the bucket."""
    prefix = kv_prefix(bucket)
    if not subject.startswith(prefix):
        raise ValueError(f"{subject!r} is not a key of KV bucket {bucket!r}")
    return subject[len(prefix) :]


def is_delete_operation(operation: str | None) -> bool:
    """Whether a ``KeyValue.Entry.operation`` (or ``KV-Operation`` value) removes the key."""
    return operation in DELETE_OPERATIONS


def is_delete(headers: Mapping[str, str] | None) -> bool:
    """Whether a message with these headers is a delete marker (delete or purge)."""
    return headers is not None and is_delete_operation(headers.get(KV_OP))


# The operation of a value write (nats-py sends no ``KV-Operation`` header for one).
KV_PUT: Final = SIGNED_KV_PUT


def operation_of(headers: Mapping[str, str] | None) -> str:
    """A KV message's operation: ``PUT``, ``DEL`` or ``PURGE``."""
    op = None if headers is None else headers.get(KV_OP)
    return op if op in DELETE_OPERATIONS else KV_PUT


@dataclass(frozen=True)
class KvChange:
    """One change of a key seen live: its new value, or None when it was removed; the
    operation and headers let a reader check who wrote it (SPEC §8.2)."""

    key: str
    value: bytes | None
    operation: str = KV_PUT
    headers: Mapping[str, str] | None = None
    revision: int | None = None

    @property
    def deleted(self) -> bool:
        return self.value is None


def decode_change(bucket: str, msg: Msg) -> KvChange:
    """A message of ``bucket``'s stream (seen by a subscription) as a :class:`KvChange`."""
    operation = operation_of(msg.headers)
    value = None if operation in DELETE_OPERATIONS else bytes(msg.data)
    return KvChange(kv_key(bucket, msg.subject), value, operation, msg.headers)


async def subscribe_changes(
    nc: Client,
    bucket: str,
    on_change: Callable[[KvChange], Awaitable[None]],
    key_filter: str = ">",
) -> Subscription:
    """Follow the keys of ``bucket`` matching ``key_filter`` live, with a plain core-NATS
    subscription (no consumer: no cost on the broker beyond the interest). Sees changes
    from now on only; read a snapshot (:func:`kanade.bus.kvsnapshot.kv_snapshot`) for the
    current values."""

    async def on_msg(msg: Msg) -> None:
        await on_change(decode_change(bucket, msg))

    return await nc.subscribe(kv_subject(bucket, key_filter), cb=on_msg)


__all__ = [
    "DELETE_OPERATIONS",
    "KV_PUT",
    "KvChange",
    "decode_change",
    "is_delete",
    "is_delete_operation",
    "kv_key",
    "kv_prefix",
    "kv_stream",
    "kv_subject",
    "operation_of",
    "subscribe_changes",
]
