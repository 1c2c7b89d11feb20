"""A complete, consistent read of KV keys — used by the backend and the agent alike."""

from __future__ import annotations

import asyncio
import json

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import KeyNotFoundError, NotFoundError

from kanade.bus.kv import KvChange, is_delete_operation, kv_prefix, kv_stream, operation_of

_DIRECT_GETS = 32
"""Up to this many keys are read one direct get each; more, in batches."""


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
    on which keys exist. The values are then read with direct gets only — a batch of
    "last message of each of these subjects" per :data:`_BATCH` keys — so a read creates
    no consumer at all: a consumer per read (a KV watcher) outlives the request on the
    broker, and a few hundred reads a second reach the stream's consumer limit (issue #15).
    A key whose batch answer is missing (purged meanwhile, or a broker that cannot batch)
    is read on its own.
    """
    prefix = kv_prefix(bucket)
    stream = kv_stream(bucket)
    info = await js.stream_info(stream, subjects_filter=prefix + key_filter)
    keys = sorted(s[len(prefix) :] for s in (info.state.subjects or {}))
    out: dict[str, tuple[bytes, int]] = {}
    seen: set[str] = set()
    if len(keys) > _DIRECT_GETS:
        for i in range(0, len(keys), _BATCH):
            chunk = [prefix + k for k in keys[i : i + _BATCH]]
            for subject, data, headers, seq in await _last_of_each(js, stream, chunk):
                key = subject[len(prefix) :]
                seen.add(key)
                if not is_delete_operation(operation_of(headers)):
                    out[key] = (data, seq)
    kv = await js.key_value(bucket)

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


_BATCH = 256
"""Subjects per batched direct get (the broker caps one batch's answers)."""

async def _last_of_each(
    js: JetStreamContext, stream: str, subjects: list[str], timeout: float = 5.0
) -> list[tuple[str, bytes, dict[str, str] | None, int]]:
    """The last message of each of ``subjects`` in ``stream``, by one batched direct get
    (``multi_last``: no consumer); ``(subject, data, headers, sequence)`` each. Whatever
    the broker did not answer (an older broker, a stream without direct gets) is simply
    absent: the caller reads those keys one by one."""
    nc = js._nc
    prefix = js._prefix
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, max_msgs=0)
    out: list[tuple[str, bytes, dict[str, str] | None, int]] = []
    try:
        request = json.dumps({"multi_last": subjects, "batch": len(subjects)}).encode()
        await nc.publish(f"{prefix}.DIRECT.GET.{stream}", request, reply=inbox)
        while True:
            try:
                msg = await sub.next_msg(timeout=timeout)
            except nats.errors.TimeoutError:
                break
            headers = dict(msg.headers or {})
            if "Status" in headers:  # 204 "EOB" ends the batch; any other status: not served
                break
            subject = headers.get("Nats-Subject", "")
            seq = int(headers.get("Nats-Sequence", "0") or 0)
            kept = {k: v for k, v in headers.items() if not k.startswith("Nats-")}
            out.append((subject, bytes(msg.data or b""), kept or None, seq))
    finally:
        await sub.unsubscribe()
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
