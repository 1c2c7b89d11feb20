"""Move every stream of a single broker into a cluster, whole: messages with their
sequence numbers and publish times, KV buckets and object stores with their revisions,
durable consumers with their ack state (SPEC §9: a deployment outgrows one machine
without losing anything).

Why not just start the single broker's store as a cluster node: nats-server (2.15) does
not adopt a standalone server's streams into a cluster's metadata — it calls them
orphans and deletes them. What it offers instead is the stream snapshot and restore API
(what ``nats stream backup``/``restore`` use), spoken here on plain NATS requests:

* snapshot: a request on ``$JS.API.STREAM.SNAPSHOT.<stream>`` names an inbox; the server
  answers with the stream's config and state, then sends the snapshot in chunks to the
  inbox, each with a reply subject to acknowledge it (flow control), and an empty
  message at the end;
* restore: a request on ``$JS.API.STREAM.RESTORE.<stream>`` with that config and state
  returns a subject; each chunk is sent there as a request (its answer is the ack), and
  an empty request ends the upload and returns the created stream (or the error).

The chunks are relayed as they arrive, never held whole. A stream the destination
already has is left alone (a migration that stopped half-way can be run again).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from kanade.bus.retry import retry

__all__ = ["Migrated", "MigrationError", "copy_streams", "stream_names"]

API = "$JS.API"
CHUNK_SIZE = 128 * 1024
REQUEST_TIMEOUT_S = 10.0
CHUNK_TIMEOUT_S = 30.0


class MigrationError(RuntimeError):
    """A stream could not be copied; the source is untouched."""


@dataclass(frozen=True)
class Migrated:
    stream: str
    messages: int
    bytes: int
    skipped: bool = False
    """True when the destination had the stream already (nothing copied)."""


async def stream_names(nc: Client) -> list[str]:
    """Every stream the connection's account holds, in name order."""
    names: list[str] = []
    offset = 0
    while True:
        reply = await _api(nc, f"{API}.STREAM.NAMES", {"offset": offset})
        page = reply.get("streams") or []
        names.extend(page)
        offset += len(page)
        if not page or offset >= int(reply.get("total", 0)):
            return sorted(names)


async def copy_streams(
    source: Client, dest: Client, streams: list[str] | None = None
) -> list[Migrated]:
    """Copy ``streams`` (default: all) from ``source`` to ``dest``, one after the other."""
    done = []
    for name in streams if streams is not None else await stream_names(source):
        done.append(await copy_stream(source, dest, name))
    return done


async def copy_stream(source: Client, dest: Client, name: str) -> Migrated:
    existing = await _api(dest, f"{API}.STREAM.INFO.{name}", None, allow_error=True)
    if "error" not in existing:
        state = existing.get("state") or {}
        return Migrated(name, int(state.get("messages", 0)), int(state.get("bytes", 0)), True)
    inbox = source.new_inbox()
    chunks: asyncio.Queue[Msg] = asyncio.Queue()

    async def take(msg: Msg) -> None:
        await chunks.put(msg)

    sub = await source.subscribe(inbox, cb=take)
    try:
        snap = await _api(
            source,
            f"{API}.STREAM.SNAPSHOT.{name}",
            {"deliver_subject": inbox, "chunk_size": CHUNK_SIZE, "no_consumers": False},
        )
        config, state = snap["config"], snap["state"]
        target = await _api(dest, f"{API}.STREAM.RESTORE.{name}",
                            {"config": config, "state": state},
                            timeout=CHUNK_TIMEOUT_S)  # fmt: skip
        upload = str(target["deliver_subject"])
        while True:
            try:
                chunk = await asyncio.wait_for(chunks.get(), CHUNK_TIMEOUT_S)
            except TimeoutError:
                raise MigrationError(f"stream {name}: the snapshot stalled") from None
            if not chunk.data:  # the end of the snapshot
                break
            ack = await _upload(dest, upload, chunk.data)
            if ack.data:
                raise MigrationError(f"stream {name}: restore refused a chunk: {ack.data!r}")
            if chunk.reply:
                await source.publish(chunk.reply, b"")
        # The end: the server now builds the stream from what it staged.
        end = await _upload(dest, upload, b"", timeout=CHUNK_TIMEOUT_S * 4)
        created = json.loads(end.data)
        if created.get("error"):
            raise MigrationError(f"stream {name}: restore failed: {created['error']}")
    finally:
        await sub.unsubscribe()
    return Migrated(name, int(state.get("messages", 0)), int(state.get("bytes", 0)))


async def _upload(
    dest: Client, subject: str, chunk: bytes, timeout: float = CHUNK_TIMEOUT_S
) -> Msg:
    """Send one chunk of a restore and wait for its acknowledgement. On a cluster the
    restore's subject is served by the node the stream is placed on, and its interest may
    take a moment to reach the node we are connected to: "no responders" means the chunk
    went nowhere, so it is sent again (anything else is not retried — a chunk stored
    twice would corrupt the restore)."""
    return await retry(
        lambda: dest.request(subject, chunk, timeout=timeout),
        retry_on=(nats.errors.NoRespondersError,),
        deadline=CHUNK_TIMEOUT_S,
        base=0.05,
        cap=1.0,
    )


async def _api(
    nc: Client,
    subject: str,
    body: dict[str, Any] | None,
    *,
    allow_error: bool = False,
    timeout: float = REQUEST_TIMEOUT_S,
) -> dict[str, Any]:
    payload = b"" if body is None else json.dumps(body).encode()
    reply = await nc.request(subject, payload, timeout=timeout)
    answer: dict[str, Any] = json.loads(reply.data)
    if answer.get("error") and not allow_error:
        raise MigrationError(f"{subject}: {answer['error']}")
    return answer
