"""A complete, consistent read of KV keys — used by the backend and the agent alike."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import KeyNotFoundError, NotFoundError

from kanade.bus.kv import KvChange, is_delete_operation, kv_prefix, kv_stream, operation_of

_DIRECT_GETS = 32
"""Up to this many keys a snapshot reads each key directly (no consumer is created)."""


async def kv_key_names(js: JetStreamContext, bucket: str, key_filter: str = ">") -> list[str]:
    """Every key of ``bucket`` with a message (a delete marker included), from the stream's
    own subject list: no value is read."""
    prefix = kv_prefix(bucket)
    info = await js.stream_info(kv_stream(bucket), subjects_filter=prefix + key_filter)
    return sorted(s[len(prefix) :] for s in (info.state.subjects or {}))


async def kv_snapshot(
    js: JetStreamContext, bucket: str, key_filter: str = ">"
) -> dict[str, tuple[bytes, int]]:
    """Every live key of ``bucket`` matching ``key_filter`` → ``(value, revision)``.

    The stream's own subject list (``STREAM.INFO`` with a subject filter) is the authority
    on which keys exist. A KV watcher alone is not enough: nats-py may hand out its "initial
    values done" marker before values the server already delivered have been processed
    (it decides from ``num_pending == 0 and delivered == 0``), so a snapshot could come back
    short. Small sets are read key by key; large ones through one short-lived watcher, then
    any key it missed is read directly.
    """
    kv = await js.key_value(bucket)
    prefix = kv_prefix(bucket)
    info = await js.stream_info(kv_stream(bucket), subjects_filter=prefix + key_filter)
    keys = sorted(s[len(prefix) :] for s in (info.state.subjects or {}))
    out: dict[str, tuple[bytes, int]] = {}
    seen: set[str] = set()
    if len(keys) > _DIRECT_GETS:
        watcher = await kv.watch(key_filter, inactive_threshold=2.0)
        try:
            while True:
                entry = await watcher.updates(timeout=10.0)  # type: ignore[no-untyped-call]
                if entry is None:  # "initial values done" (possibly early, see above)
                    break
                seen.add(entry.key)
                if is_delete_operation(entry.operation) or entry.value is None:
                    out.pop(entry.key, None)
                else:
                    out[entry.key] = (entry.value, int(entry.revision or 0))
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]

    async def direct(key: str) -> None:
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:  # deleted (its delete marker is the last message)
            return
        if entry.value is not None:
            out[key] = (entry.value, int(entry.revision or 0))

    missing = [k for k in keys if k not in seen]
    for i in range(0, len(missing), _DIRECT_GETS):
        await asyncio.gather(*(direct(k) for k in missing[i : i + _DIRECT_GETS]))
    return out


async def kv_changes(js: JetStreamContext, bucket: str, key_filter: str = ">") -> list[KvChange]:
    """The last message of every key of ``bucket`` matching ``key_filter``, delete markers
    included, with its headers: what a reader that checks signatures re-syncs from (a
    ``KeyValue`` entry drops the headers). Like :func:`kv_snapshot`, the stream's subject
    list is the authority: small sets are read key by key, large ones through one
    short-lived ordered consumer (last message per subject), then any key it missed
    directly."""
    prefix = kv_prefix(bucket)
    stream = kv_stream(bucket)
    info = await js.stream_info(stream, subjects_filter=prefix + key_filter)
    keys = sorted(s[len(prefix) :] for s in (info.state.subjects or {}))
    out: dict[str, KvChange] = {}

    def keep(subject: str, data: bytes | None, headers: dict[str, str] | None, seq: int) -> None:
        operation = operation_of(headers)
        value = None if is_delete_operation(operation) else bytes(data or b"")
        key = subject[len(prefix) :]
        out[key] = KvChange(key, value, operation, headers, seq)

    if len(keys) > _DIRECT_GETS:
        sub = await js.subscribe(
            prefix + key_filter,
            stream=stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            inactive_threshold=2.0,
        )
        try:
            while len(out) < len(keys):
                msg = await sub.next_msg(timeout=10.0)
                meta = msg.metadata
                keep(msg.subject, msg.data, dict(msg.headers or {}) or None, meta.sequence.stream)
                if meta.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()

    async def last(key: str) -> None:
        try:
            msg = await js.get_last_msg(stream, prefix + key)
        except NotFoundError:  # purged between the listing and the read
            return
        keep(prefix + key, msg.data, dict(msg.headers) if msg.headers else None, int(msg.seq or 0))

    missing = [k for k in keys if k not in out]
    for i in range(0, len(missing), _DIRECT_GETS):
        await asyncio.gather(*(last(k) for k in missing[i : i + _DIRECT_GETS]))
    return sorted(out.values(), key=lambda c: c.key)
