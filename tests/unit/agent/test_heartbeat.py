"""The disk in the heartbeat (SPEC §2.7, §7): full or not, why, free bytes and how many
messages wait in memory — bounded by the agent that writes them and by every reader."""

from __future__ import annotations

import errno
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kanade.agent.durable.diskhealth import DiskHealth
from kanade.agent.heartbeat import Telemetry
from kanade.core.models.wire import MAX_HELD, Heartbeat, WireDecodeError, decode, encode

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def beat(disk: DiskHealth | None, held: int = 0) -> Heartbeat:
    return Telemetry(lambda: NOW).heartbeat(
        pc_id="pc-1", groups=[], last_command_at=None, queue_length=0, running=0,
        disk=disk, held_messages=held,
    )  # fmt: skip


def test_a_disk_with_room_says_so(tmp_path: Path) -> None:
    hb = beat(DiskHealth(tmp_path, reserve_bytes=0))
    assert (hb.disk_full, hb.disk_error, hb.held_messages) == (False, None, 0)
    assert hb.disk_free_bytes is not None and hb.disk_free_bytes > 0


def test_a_full_disk_says_why_and_what_it_holds(tmp_path: Path) -> None:
    disk = DiskHealth(tmp_path, reserve_bytes=0)
    disk.failed(OSError(errno.ENOSPC, "No space left on device"), "the ledger")
    hb = decode(Heartbeat, encode(beat(disk, held=3)))  # what the backend reads
    assert (hb.disk_full, hb.disk_error, hb.held_messages) == (True, "No space left on device", 3)
    low = beat(DiskHealth(tmp_path, reserve_bytes=2**62))
    assert low.disk_full and (low.disk_error or "").startswith("only ")


def test_the_writer_bounds_what_it_sends(tmp_path: Path) -> None:
    disk = DiskHealth(tmp_path, reserve_bytes=0)
    disk.failed(OSError(errno.EIO, "x" * 5000), "the outbox")
    hb = beat(disk, held=10**12)
    assert len(hb.disk_error or "") == 200 and hb.held_messages == MAX_HELD
    decode(Heartbeat, encode(hb))  # within the reader's bounds


@pytest.mark.parametrize(
    ("field", "value"),
    [("disk_free_bytes", -1), ("disk_free_bytes", 2**63), ("held_messages", -1),
     ("held_messages", MAX_HELD + 1), ("disk_error", "x" * 201)],
)  # fmt: skip
def test_the_reader_refuses_values_out_of_bounds_naming_the_field(field: str, value: Any) -> None:
    raw = encode(beat(None)).decode().replace("}", f', "{field}": {value!r}}}'.replace("'", '"'))
    with pytest.raises(WireDecodeError, match=field):
        decode(Heartbeat, raw.encode())
