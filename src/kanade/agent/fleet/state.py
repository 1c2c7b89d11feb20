"""The fleet state an agent reads from KV: pins, revocations, group membership, config layers,
and the local scheduler's catalogs (schedules, jobs, fleet freeze — whole buckets).

A real agent mirrors only the keys that concern it (its own membership and
config layers) — that keeps the broker interest per agent small. A swarm of
simulated identities in one process shares one mirror of each whole bucket
instead of holding thousands of copies; every identity reads its own keys
from it. Listeners are told which mirror changed.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable

from nats.aio.client import Client

from kanade.agent.fleet.mirror import KvMirror, reject_all
from kanade.agent.trust import Trust
from kanade.bus.kv import KvChange
from kanade.core import subjects
from kanade.core.bounds import loads as json_loads
from kanade.core.signing import header_of

Listener = Callable[[KvMirror], None]


def config_keys(pc_id: str, groups: list[str]) -> list[str]:
    """The config layers that apply to one agent (SPEC §3.7)."""
    return ["global", *(f"group.{g}" for g in sorted(groups)), f"pc.{pc_id}"]


class FleetState:
    def __init__(
        self,
        *,
        pc_id: str | None = None,
        groups: list[str] | None = None,
        trust: Trust | None = None,
    ) -> None:
        """``pc_id`` given: mirror only that agent's keys; None: mirror whole buckets.
        ``trust`` checks every change's signature; without it nothing from KV is believed."""
        self.shared = pc_id is None
        self.trust = trust
        self._listeners: list[Listener] = []
        everything = [">"]
        accept = self._accept if trust is not None else reject_all

        def mirror(bucket: str, keys: list[str]) -> KvMirror:
            return KvMirror(bucket, keys, on_change=self._changed, accept=accept)

        # First: a re-sync learns a rotated key before it reads documents signed with it.
        self.signing_keys = mirror(subjects.KV_TRUST, [subjects.SIGNING_KEYS_KEY])
        self.pins = mirror(subjects.KV_PINS, everything)
        self.revocations = mirror(subjects.KV_REVOCATIONS, everything)
        self.membership = mirror(subjects.KV_GROUPS, everything if pc_id is None else [pc_id])
        self.config = mirror(
            subjects.KV_CONFIG, everything if pc_id is None else config_keys(pc_id, groups or [])
        )
        # The local scheduler's catalogs (SPEC §3.6): whole buckets, read after the gate
        # state so a re-sync brings pins/revocations/membership up to date first.
        self.schedules = mirror(subjects.KV_SCHEDULES, everything)
        self.jobs = mirror(subjects.KV_JOBS, everything)
        self.freeze = mirror(subjects.KV_FREEZE, everything)
        self.mirrors = (
            self.signing_keys,
            self.pins,
            self.revocations,
            self.membership,
            self.config,
            self.schedules,
            self.jobs,
            self.freeze,
        )
        self._lock = asyncio.Lock()

    def snapshot(self, in_sync_at: float) -> bytes:
        """Everything mirrored, for the disk: an agent restarted while the broker is
        away must still honour revocations and pins it had seen (SPEC §4.5)."""
        return json.dumps({
            "in_sync_at": in_sync_at,
            "buckets": {
                m.bucket: {k: base64.b64encode(v).decode() for k, v in m.values.items()}
                for m in self.mirrors
            },
        }).encode()

    def restore(self, raw: bytes) -> float | None:
        """Load a snapshot into mirrors that have not synced yet; returns when it was
        last in sync with the broker (None if the snapshot is unreadable)."""
        try:
            data = json_loads(raw)
            buckets = data["buckets"]
            in_sync_at = float(data["in_sync_at"])
            for mirror in self.mirrors:
                if mirror.synced or mirror.bucket not in buckets:
                    continue
                mirror.values = {k: base64.b64decode(v) for k, v in buckets[mirror.bucket].items()}
                self._changed(mirror)
        except (ValueError, KeyError, TypeError):
            return None
        return in_sync_at

    def _accept(self, bucket: str, change: KvChange) -> bool:
        """Whether a KV change carries a signature by a trusted key (SPEC §8.2); a
        verified signing-key set is applied at once (rotation)."""
        assert self.trust is not None
        verification = self.trust.verify_kv(
            bucket, change.key, change.operation, change.value or b"", header_of(change.headers)
        )
        if not verification.ok:
            self.trust.reject_doc(bucket, change.key, verification)
            return False
        if bucket == subjects.KV_TRUST and change.value is not None:
            self.trust.announce(change.value)
        return True

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _changed(self, mirror: KvMirror) -> None:
        for listener in self._listeners:
            listener(mirror)

    async def resync(self, nc: Client) -> None:
        """Fresh snapshot of every mirror (a failed read keeps the previous state)."""
        async with self._lock:
            for mirror in self.mirrors:
                await mirror.resync(nc)

    async def current_membership(self, nc: Client) -> bool:
        """Whether the membership mirror holds every change up to now, re-reading it first
        if a disconnect left it stale (False: the re-read failed too)."""
        async with self._lock:
            if not self.membership.current:
                await self.membership.resync(nc)
            return self.membership.current

    async def follow_groups(self, nc: Client, pc_id: str, groups: list[str]) -> None:
        """A per-agent mirror follows the config layers of the agent's new groups."""
        if not self.shared:
            await self.config.set_filters(nc, config_keys(pc_id, groups))
