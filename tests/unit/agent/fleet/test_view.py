"""What the agent derives from its mirrored fleet state: gate view, groups, config; the
fleet-state file."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kanade.agent.fleet.state import FleetState
from kanade.agent.fleet.view import FleetView, StateFileWriter
from kanade.core.models.membership import Membership
from polling import eventually


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.fleet = FleetState(pc_id="pc-1", groups=["web"])
        self.group_changes = 0
        self.configs: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.view = FleetView(
            pc_id="pc-1",
            fleet=self.fleet,
            owns_fleet=True,
            static_groups=["web"],
            local_config={"heartbeat_interval": 30.0},
            state_file=tmp_path / "fleet-state.json",
            durable=False,
            on_groups_changed=self._groups_changed,
            on_config=lambda old, new: self.configs.append((old, new)),
        )

    def _groups_changed(self) -> None:
        self.group_changes += 1


def test_pins_and_revocations_make_the_gate_view(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.fleet.pins.values = {"deploy": b"7"}
    rig.fleet.pins._notify()
    rig.fleet.revocations.values = {"wipe": b"{}"}
    rig.fleet.revocations._notify()
    view = rig.view.kv_view()
    assert view.pins == {"deploy": "7"} and view.revoked == frozenset({"wipe"})
    assert view.age_s == float("inf")  # never synced


def test_staleness_counts_from_the_disconnect(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.view.connected()
    assert rig.view.kv_view().age_s == 0.0
    rig.view.disconnected()
    assert rig.view.in_sync_at is not None and rig.view.in_sync_at <= time.time()


def test_kv_membership_adds_to_the_static_groups(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.fleet.membership.values = {"pc-1": json.dumps(["db", 3, "web"]).encode()}
    rig.fleet.membership._notify()
    assert rig.view.groups == ["db", "web"] and rig.group_changes == 1
    rig.fleet.membership._notify()  # same groups: nothing to follow
    assert rig.group_changes == 1
    rig.fleet.membership.values = {"pc-1": b"{ torn"}
    rig.fleet.membership._notify()
    assert rig.view.groups == ["web"] and rig.group_changes == 2


def test_each_group_carries_the_instant_the_pc_joined_it(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    assert rig.view.joined == {"web": None}  # the --group flag: no recorded join
    joined = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    rig.fleet.membership.values = {"pc-1": Membership(groups={"db": joined}).encode()}
    rig.fleet.membership._notify()
    assert rig.view.joined == {"db": joined, "web": None}
    rig.fleet.membership.values = {"pc-1": b'["db"]'}  # a value from before `since`
    rig.fleet.membership._notify()
    assert rig.view.joined == {"db": None, "web": None}


def test_a_disconnect_makes_the_membership_stale_until_re_read(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.fleet.membership.current = True  # as after a successful re-sync
    rig.view.disconnected()
    assert not rig.fleet.membership.current


def test_config_layers_over_the_local_settings(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.fleet.config.values = {
        "global": json.dumps({"heartbeat_interval": 10}).encode(),
        "pc.pc-1": b"{ torn",
    }
    rig.fleet.config._notify()
    old, new = rig.configs[-1]
    assert old == {} and new["heartbeat_interval"] == 10
    assert rig.view.config.values == new


def test_the_fleet_state_file_round_trips(tmp_path: Path) -> None:
    seen = Rig(tmp_path)
    seen.fleet.revocations.values = {"wipe": b"{}"}
    in_sync_at = time.time() - 60
    (tmp_path / "fleet-state.json").write_bytes(seen.fleet.snapshot(in_sync_at))
    fresh = Rig(tmp_path)
    fresh.view.restore()
    assert fresh.view.kv_view().revoked == frozenset({"wipe"})
    assert fresh.view.in_sync_at == in_sync_at


# --- the fleet-state file ------------------------------------------------------------------------
async def test_the_state_file_is_written_after_a_change_at_most_once_a_second(
    tmp_path: Path,
) -> None:
    writes: list[float] = []
    writer = StateFileWriter(lambda: writes.append(time.monotonic()) or True)
    await writer.step()
    assert writes == []  # nothing changed: nothing to write
    writer.mark_dirty()
    await writer.step()
    assert len(writes) == 1
    assert writer.next_delay(None, failed=False) == writer.interval  # clean: wait for a change
    writer.mark_dirty()
    await writer.step()  # woken within the second: not written yet
    assert len(writes) == 1
    assert 0 < writer.next_delay(None, failed=False) <= writer.MIN_GAP_S


async def test_the_running_writer_writes_the_mirrored_state(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    state_file = tmp_path / "fleet-state.json"
    task = asyncio.create_task(rig.view.state_file.run())
    try:
        rig.view.connected()
        rig.fleet.pins.values = {"deploy": b"7"}
        rig.fleet.pins._notify()
        await eventually(state_file.exists, "fleet-state file written")
        restored = FleetState(pc_id="pc-1", groups=["web"])
        assert restored.restore(state_file.read_bytes()) is not None
        assert restored.pins.values == {"deploy": b"7"}
    finally:
        rig.view.state_file.stop()
        await asyncio.wait_for(task, 5)
