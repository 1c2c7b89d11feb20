"""What an agent derives from its mirrored fleet state (SPEC §3.3, §3.7): the gate view
(pins, revocations, and how stale they may be), its group membership and its effective
config. Also the fleet-state file that lets a restarted agent keep honouring what it saw.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from kanade.agent.durable.diskhealth import DiskHealth
from kanade.agent.durable.fsutil import atomic_write
from kanade.agent.fleet.mirror import KvMirror
from kanade.agent.fleet.state import FleetState
from kanade.core.agentconfig import Effective, effective_config
from kanade.core.bounds import loads as json_loads
from kanade.core.gates import KvView
from kanade.core.models.membership import Membership
from kanade.worker import Worker

log = logging.getLogger("kanade.agent")


def _decode_json(raw: bytes, what: str) -> Any:
    try:
        return json_loads(raw)
    except ValueError:
        log.warning("ignored undecodable %s in KV", what)
        return None


class FleetView:
    """Recomputes the gate view, groups and config whenever a mirror changes."""

    def __init__(
        self,
        *,
        pc_id: str,
        fleet: FleetState,
        owns_fleet: bool,
        static_groups: list[str],
        local_config: dict[str, Any],
        state_file: Path,
        durable: bool,
        on_groups_changed: Callable[[], None],
        on_config: Callable[[dict[str, Any], dict[str, Any]], None],
        disk: DiskHealth | None = None,
    ) -> None:
        self.pc_id = pc_id
        self._disk = disk
        self.fleet = fleet
        # A swarm shares one FleetState between its identities and owns re-syncing
        # and persisting it, not each identity.
        self.owns_fleet = owns_fleet
        self.static_groups = list(static_groups)
        self.groups: list[str] = list(static_groups)
        # Each group → when this pc joined it (backend clock, signed KV), None if unknown:
        # what the intake checks a group command's issued_at against (SPEC §3.2).
        self.joined: dict[str, datetime | None] = dict.fromkeys(self.groups)
        # The groups KV lists for this pc: what the backend provisions its consumer from.
        self.kv_groups: list[str] = []
        # The settings this agent was started with: the base under the KV layers.
        self._local_config = local_config
        self._state_file = state_file
        self._durable = durable
        self._on_groups_changed = on_groups_changed
        self._on_config = on_config
        self.view = KvView()
        self.config = Effective({})
        # Wall-clock time up to which the mirrored fleet state is known to be current:
        # None while connected and synced; the disconnect time (or the persisted
        # snapshot's time after a restart) otherwise; -inf when never synced.
        self.in_sync_at: float | None = float("-inf")
        self.state_file = StateFileWriter(self.write_state)
        fleet.listen(self._on_fleet_state)

    def kv_view(self) -> KvView:
        """The gate view, with how long the mirrored state may have been stale."""
        age = 0.0 if self.in_sync_at is None else max(0.0, time.time() - self.in_sync_at)
        return KvView(pins=self.view.pins, revoked=self.view.revoked, age_s=age)

    # --- connection ---------------------------------------------------------------------------
    def connected(self) -> None:
        self.in_sync_at = None

    def disconnected(self) -> None:
        if self.owns_fleet:
            # Changes made while away are not seen until the re-sync after the reconnect:
            # until then the membership may not be believed for group commands.
            self.fleet.membership.mark_stale()
        if self.in_sync_at is None:
            self.in_sync_at = time.time()
            self.state_file.mark_dirty()  # record how long we were in sync

    # --- the fleet-state file -----------------------------------------------------------------
    def restore(self) -> None:
        """Load the fleet-state file left by an earlier run (before any command is gated)."""
        if not self.owns_fleet:
            return  # a swarm's shared state is not persisted per identity
        with contextlib.suppress(OSError):
            in_sync_at = self.fleet.restore(self._state_file.read_bytes())
            if in_sync_at is None:
                log.warning("fleet state file is unreadable; starting without it")
            elif self.in_sync_at is not None:
                self.in_sync_at = in_sync_at

    def write_state(self) -> bool:
        """Write the mirrored state to the fleet-state file (once it was ever in sync).
        False when the disk refused it (reported, not raised: it is retried)."""
        in_sync_at = time.time() if self.in_sync_at is None else self.in_sync_at
        if in_sync_at == float("-inf"):
            return True
        try:
            atomic_write(self._state_file, self.fleet.snapshot(in_sync_at), durable=self._durable)
        except OSError as exc:
            if self._disk is None:
                raise
            self._disk.failed(exc, "the fleet-state file")
            return False
        if self._disk is not None:
            self._disk.wrote()
        return True

    # --- derived state ------------------------------------------------------------------------
    def _on_fleet_state(self, mirror: KvMirror) -> None:
        """Recompute what depends on KV: gate view, group membership, effective config."""
        self.state_file.mark_dirty()
        fleet = self.fleet
        if mirror is fleet.pins or mirror is fleet.revocations:
            pins = {k: v.decode(errors="replace") for k, v in fleet.pins.values.items()}
            revoked = frozenset(fleet.revocations.values)
            self.view = KvView(pins=pins, revoked=revoked)
            return
        if mirror is fleet.membership:
            kv = Membership.decode(fleet.membership.values.get(self.pc_id)).groups
            self.kv_groups = sorted(kv)
            groups = sorted(set(self.static_groups) | set(kv))
            # A group only the --group flags name has no recorded join: None.
            self.joined = {g: kv.get(g) for g in groups}
            if groups != self.groups:
                log.info("group membership changed: %s -> %s", self.groups, groups)
                self.groups = groups
                self._on_groups_changed()
            return
        if mirror in (fleet.schedules, fleet.jobs, fleet.freeze):
            return  # the local scheduler listens to these itself
        layers: dict[str, dict[str, Any]] = {}
        for key, raw in fleet.config.values.items():
            value = _decode_json(raw, f"config layer {key}")
            if isinstance(value, dict):
                layers[key] = value
        eff = effective_config(
            layers, pc_id=self.pc_id, groups=self.groups, local=self._local_config
        )
        for warning in eff.warnings:
            if warning not in self.config.warnings:
                log.warning("config: %s", warning)
        old = self.config.values
        self.config = eff
        self._on_config(old, eff.values)


class StateFileWriter(Worker):
    """Writes the fleet-state file after changes, at most once a second.

    No interval: it sleeps until :meth:`mark_dirty`. A change within a second of the last
    write is written when that second is over, not at once (wake-ups do not shorten it).
    """

    name = "fleet-state file"
    MIN_GAP_S = 1.0

    def __init__(self, write: Callable[[], bool]) -> None:
        super().__init__(interval=math.inf)
        self._write = write
        self._dirty = False
        self._next_write_at = 0.0  # monotonic

    def mark_dirty(self) -> None:
        self._dirty = True
        self.wake()

    async def step(self) -> None:
        if not self._dirty or time.monotonic() < self._next_write_at:
            return
        # Only once written: a write that raised is retried with backoff, one the full
        # disk refused (already reported) a second later.
        if self._write():
            self._dirty = False
        self._next_write_at = time.monotonic() + self.MIN_GAP_S

    def next_delay(self, more: bool | None, failed: bool) -> float:
        if failed or not self._dirty:
            return super().next_delay(more, failed)
        return max(0.0, self._next_write_at - time.monotonic())
