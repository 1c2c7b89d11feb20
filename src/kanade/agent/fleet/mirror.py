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

Every change, live or re-read, must carry the backend's signature (SPEC §8.2): one that
does not is ignored and the key keeps its previous value — an unsigned delete never
un-revokes or un-freezes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client

from kanade.bus.kv import KvChange, subscribe_changes
from kanade.bus.kvsnapshot import kv_changes

log = logging.getLogger(__name__)

Accept = Callable[[str, KvChange], bool]
"""``accept(bucket, change)``: whether a change is signed by a trusted key."""


def reject_all(_bucket: str, _change: KvChange) -> bool:
    return False


class KvMirror:
    def __init__(
        self,
        bucket: str,
        key_filters: list[str],
        *,
        on_change: Callable[[KvMirror], None] | None = None,
        accept: Accept = reject_all,
    ) -> None:
        self.bucket = bucket
        self._accept = accept
        self.key_filters = key_filters
        self.values: dict[str, bytes] = {}
        self.synced = False
        # True from a successful re-sync until :meth:`mark_stale` (a disconnect): only
        # then is every change up to now known (live changes are missed while away).
        self.current = False
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
        if not self._accept(self.bucket, change):
            return
        if self._buffer is not None:
            self._buffer.append((change.key, change.value))
        self._apply(change.key, change.value)
        self._notify()

    def mark_stale(self) -> None:
        """Changes may be missed from now on (the connection dropped)."""
        self.current = False

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
        self.current = True
        self._notify()
        return True

    async def _snapshot(self, nc: Client) -> dict[str, bytes]:
        # kv_changes lists the stream's own subjects, so a snapshot is never short, and
        # reads each key's last message with its headers, delete markers included, so
        # each can be checked; no consumer is created.
        js = nc.jetstream()
        fresh: dict[str, bytes] = {}
        for key_filter in self.key_filters:
            for change in await kv_changes(js, self.bucket, key_filter):
                if not self._accept(self.bucket, change):
                    previous = self.values.get(change.key)
                    if previous is not None:
                        fresh[change.key] = previous
                elif change.value is not None:
                    fresh[change.key] = change.value
        return fresh
