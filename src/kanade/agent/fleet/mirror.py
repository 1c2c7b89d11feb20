"""A local mirror of selected KV keys, kept live without a per-agent consumer.

Every KV write is a message on the key's subject; a plain core-NATS subscription to
those subjects (:func:`kanade.bus.kv.subscribe_changes`) sees each change as it happens,
at no cost on the broker beyond the interest itself. Consumers are only used briefly, to
read a fresh snapshot after each (re)connect.

Re-sync rules (SPEC §3.6): the snapshot is built into a *fresh* copy and only
swapped in when complete; a failed read keeps the previous state, because a
transient error must never make the agent forget revocations or pins. Live
updates that arrive while the snapshot is read are applied on top of it
(they are newer than anything the snapshot can contain).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client

from kanade.bus.kv import KvChange, subscribe_changes
from kanade.bus.kvsnapshot import kv_snapshot

log = logging.getLogger(__name__)


class KvMirror:
    def __init__(
        self,
        bucket: str,
        key_filters: list[str],
        *,
        on_change: Callable[[KvMirror], None] | None = None,
    ) -> None:
        self.bucket = bucket
        self.key_filters = key_filters
        self.values: dict[str, bytes] = {}
        self.synced = False
        self._on_change = on_change
        self._subs: list[Any] = []
        self._buffer: list[tuple[str, bytes | None]] | None = None

    def _notify(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change(self)
            except Exception:
                log.exception("KV change handler for %s failed", self.bucket)

    def _apply(self, key: str, value: bytes | None) -> None:
        if value is None:
            self.values.pop(key, None)
        else:
            self.values[key] = value

    async def _on_kv_change(self, change: KvChange) -> None:
        if self._buffer is not None:
            self._buffer.append((change.key, change.value))
        self._apply(change.key, change.value)
        self._notify()

    async def set_filters(self, nc: Client, key_filters: list[str]) -> None:
        """Follow a different key set (e.g. after a group change) and re-sync."""
        self.key_filters = key_filters
        await self.resync(nc)

    async def resync(self, nc: Client, *, timeout: float = 5.0) -> bool:
        """Read a fresh snapshot; True if it was swapped in, False if the old state was kept."""
        for sub in self._subs:
            with contextlib.suppress(Exception):  # connection already gone
                await sub.unsubscribe()
        self._subs = [
            await subscribe_changes(nc, self.bucket, self._on_kv_change, key_filter)
            for key_filter in self.key_filters
        ]
        self._buffer = []
        try:
            fresh = await asyncio.wait_for(self._snapshot(nc), timeout)
        except Exception as exc:
            log.warning(
                "could not re-sync KV bucket %s (%s); keeping the previous state", self.bucket, exc
            )
            self._buffer = None
            return False
        for key, value in self._buffer:
            if value is None:
                fresh.pop(key, None)
            else:
                fresh[key] = value
        self._buffer = None
        self.values = fresh
        self.synced = True
        self._notify()
        return True

    async def _snapshot(self, nc: Client) -> dict[str, bytes]:
        # kv_snapshot checks the stream's own subject list, so a snapshot is never
        # short (a bare watcher's "initial values done" marker can come early), and
        # reads small key sets directly, without creating any consumer.
        js = nc.jetstream()
        fresh: dict[str, bytes] = {}
        for key_filter in self.key_filters:
            for key, (value, _rev) in (await kv_snapshot(js, self.bucket, key_filter)).items():
                fresh[key] = value
        return fresh
