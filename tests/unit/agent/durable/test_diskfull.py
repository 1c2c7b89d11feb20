"""The durable layer on a full disk (SPEC §7; docs/agent.md, "A full disk"): the ledger and
the outbox hold what the disk refuses in memory and write it, in order, once it has room;
what must be on disk before the agent goes on (admission, launching) raises instead.

The disk is made full by fault injection (tests/fulldisk.py); the integration suite fills a
real small filesystem (tests/integration/test_fault_agent_disk_full.py).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
from pathlib import Path

import pytest

from fulldisk import FullDisk
from kanade.agent.durable.diskhealth import DiskHealth, describe
from kanade.agent.durable.diskwatch import RETRY_S, DiskWatch
from kanade.agent.durable.fsutil import atomic_write
from kanade.agent.durable.ledger import Admission, Ledger
from kanade.agent.durable.outbox import Envelope, Outbox

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    return FullDisk(tmp_path, monkeypatch)


def health(tmp_path: Path) -> DiskHealth:
    return DiskHealth(tmp_path, reserve_bytes=0)  # only failed writes count here


# --- DiskHealth -----------------------------------------------------------------------------
def test_full_from_a_failed_write_until_one_succeeds_said_once_each_way(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h, changes = health(tmp_path), list[bool]()
    h.on_change.append(changes.append)
    assert not h.full and h.error is None
    with caplog.at_level(logging.INFO, logger="kanade.agent"):
        h.failed(ENOSPC, "the ledger")
        h.failed(ENOSPC, "the outbox")  # still full: not news
        assert h.full and h.error == "No space left on device"
        h.wrote()
        h.wrote()
    assert not h.full and changes == [True, False]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "is full (writing the ledger failed: No space left" in lines[0]
    assert "takes writes again" in lines[1]
    assert not any(r.exc_info for r in caplog.records)  # one line, no traceback


def test_less_free_space_than_the_reserve_counts_as_full(tmp_path: Path) -> None:
    h = DiskHealth(tmp_path, reserve_bytes=2**62)
    assert h.full and h.error is not None and h.error.startswith("only ")
    refusal = h.refusal()
    assert str(tmp_path) in refusal and "full" in refusal and "no new work" in refusal
    h.wrote()  # a write that went through does not make the space appear
    assert h.full


def test_an_error_is_described_in_words_and_bounded() -> None:
    assert describe(ENOSPC) == "No space left on device"
    assert describe(OSError(errno.EROFS, "Read-only file system")) == "Read-only file system"
    assert len(describe(OSError(5, "x" * 1000))) == 200


# --- the ledger ---------------------------------------------------------------------------------
def test_a_finished_result_is_held_and_written_in_order_when_there_is_room(
    tmp_path: Path, disk: FullDisk
) -> None:
    h = health(tmp_path)
    ledger = Ledger(tmp_path / "ledger", durable=True, disk=h)
    assert ledger.admit("r1", "d1", "{}", 1.0) is Admission.NEW
    ledger.mark_launching("r1", 2.0)
    disk.full = True
    assert ledger.mark_finished("r1", '{"exit_code": 0}', 3.0) is False  # never raises
    ledger.mark_queued("r1")
    assert ledger.backlog == 2 and h.full
    assert ledger.get("r1").state == "finished"  # type: ignore[union-attr]
    assert not ledger.flush_backlog()
    disk.full = False
    assert ledger.flush_backlog() and ledger.backlog == 0 and not h.full
    ledger.close()
    again = Ledger(tmp_path / "ledger")
    again.load()
    entry = again.get("r1")
    assert entry is not None and (entry.state, entry.result, entry.queued) == (
        "finished", '{"exit_code": 0}', True)  # fmt: skip


def test_what_must_be_on_disk_raises_and_changes_nothing(tmp_path: Path, disk: FullDisk) -> None:
    ledger = Ledger(tmp_path / "ledger", durable=False, disk=health(tmp_path))
    ledger.admit("r1", "d1", "{}", 1.0)
    disk.full = True
    with pytest.raises(OSError):
        ledger.admit("r2", "d2", "{}", 1.0)
    assert ledger.get("r2") is None
    with pytest.raises(OSError):
        ledger.mark_launching("r1", 2.0)
    assert ledger.get("r1").state == "pending"  # type: ignore[union-attr]
    # A command refused for the full disk is admitted in memory: a replay is a duplicate.
    assert ledger.admit("r3", "d3", "{}", 1.0, must_write=False) is Admission.NEW
    assert ledger.admit("r3", "d3", "{}", 1.0) is Admission.DUPLICATE
    disk.full = False
    assert ledger.flush_backlog()
    ledger.close()
    again = Ledger(tmp_path / "ledger")
    again.load()
    assert again.get("r3") is not None and again.get("r2") is None


def test_a_line_the_disk_took_only_half_of_is_cut_off(tmp_path: Path, disk: FullDisk) -> None:
    ledger = Ledger(tmp_path / "ledger", durable=False, disk=health(tmp_path))
    ledger.admit("r1", "d1", "{}", 1.0)
    size = ledger.path.stat().st_size
    disk.full, disk.budget = True, 10  # ten bytes of the next line fit, then ENOSPC
    assert ledger.mark_finished("r1", "x" * 100, 2.0) is False
    assert ledger.path.stat().st_size == size  # no torn line left behind
    disk.full = False
    assert ledger.flush_backlog()
    ledger.admit("r2", "d2", "{}", 3.0)
    ledger.close()
    again = Ledger(tmp_path / "ledger")
    again.load()
    assert again.get("r1").result == "x" * 100 and again.get("r2") is not None  # type: ignore[union-attr]


def test_a_torn_last_line_from_a_crash_is_cut_off_at_load(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, durable=False)
    ledger.admit("r1", "d1", "{}", 1.0)
    ledger.close()
    with open(ledger.path, "ab") as fh:
        fh.write(b'{"request_id": "r1", "sta')  # the crash
    again = Ledger(tmp_path, durable=False)
    again.load()
    again.admit("r2", "d2", "{}", 2.0)  # would be glued to the torn line otherwise
    again.close()
    third = Ledger(tmp_path)
    third.load()
    assert third.get("r1") is not None and third.get("r2") is not None


def test_a_compaction_without_room_keeps_the_old_journal(tmp_path: Path, disk: FullDisk) -> None:
    h = health(tmp_path)
    ledger = Ledger(tmp_path / "ledger", durable=False, disk=h)
    for i in range(3):
        ledger.admit(f"r{i}", "d", "{}", 1.0)
        ledger.mark_finished(f"r{i}", "{}", 1.0)
        ledger.mark_queued(f"r{i}")
    disk.full = True
    ledger._maybe_compact(force=True)
    assert h.full and not list((tmp_path / "ledger").glob("*.compact"))
    disk.full = False
    ledger.admit("r9", "d", "{}", 2.0)
    ledger.close()
    again = Ledger(tmp_path / "ledger")
    again.load()
    assert len(again) == 4


# --- the outbox ---------------------------------------------------------------------------------
class Sink:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def publish(self, subject: str, data: bytes, msg_id: str) -> None:
        self.sent.append(msg_id)

    async def upload(self, name: str, path: Path) -> None:
        pass


def test_a_message_the_disk_refuses_is_sent_from_memory(tmp_path: Path, disk: FullDisk) -> None:
    h = health(tmp_path)
    box = Outbox(tmp_path / "o", durable=True, disk=h)
    settled: list[str] = []
    disk.full = True
    box.put(Envelope("kanade.result.pc-1", "m1", b"{}", on_settled=lambda: settled.append("m1")))
    assert (len(box), box.held, settled) == (1, 1, [])
    assert h.full and not list((tmp_path / "o").glob("*"))  # no temp file left either
    sink = Sink()
    assert asyncio.run(box.drain_once(sink.publish, sink.upload)) == (1, 0)
    assert sink.sent == ["m1"] and settled == ["m1"] and box.held == 0 and len(box) == 0


def test_held_messages_are_written_in_order_once_there_is_room(
    tmp_path: Path, disk: FullDisk
) -> None:
    box = Outbox(tmp_path / "o", durable=False, disk=health(tmp_path))
    settled: list[str] = []
    disk.full = True
    for i in range(3):
        done = functools.partial(settled.append, f"m{i}")
        box.put(Envelope("s", f"m{i}", b"{}", on_settled=done))
    assert not box.persist()
    disk.full = False
    assert box.persist() and box.held == 0 and settled == ["m0", "m1", "m2"]
    again = Outbox(tmp_path / "o", durable=False)
    sink = Sink()
    asyncio.run(again.drain_once(sink.publish, sink.upload))
    assert sink.sent == ["m0", "m1", "m2"]


def test_an_atomic_write_that_fails_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_room(_fd: int) -> None:  # ext4 with delayed allocation says so at fsync
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_room)
    with pytest.raises(OSError):
        atomic_write(tmp_path / "f", b"x" * 100)
    assert list(tmp_path.iterdir()) == []


# --- the retries ------------------------------------------------------------------------------
async def test_the_watch_retries_while_anything_waits_and_sleeps_otherwise(
    tmp_path: Path, disk: FullDisk
) -> None:
    h = health(tmp_path)
    ledger = Ledger(tmp_path / "ledger", durable=False, disk=h)
    box = Outbox(tmp_path / "o", durable=False, disk=h)
    watch = DiskWatch(h, ledger, box)
    assert watch.next_delay(None, failed=False) == watch.interval  # idle: no polling
    ledger.admit("r1", "d", "{}", 1.0)
    disk.full = True
    ledger.mark_finished("r1", "{}", 2.0)
    box.put(Envelope("s", "m1", b"{}", on_settled=lambda: ledger.mark_queued("r1")))
    await watch.step()
    assert watch.next_delay(None, failed=False) == RETRY_S and h.full
    disk.full = False
    await watch.step()
    assert (ledger.backlog, box.held, h.full) == (0, 0, False)
    assert ledger.get("r1").queued  # type: ignore[union-attr]
    assert watch.next_delay(None, failed=False) == watch.interval


async def test_the_watch_notices_room_with_a_probe_when_nothing_waits(
    tmp_path: Path, disk: FullDisk
) -> None:
    h = health(tmp_path)
    watch = DiskWatch(h, Ledger(tmp_path / "l", disk=h), Outbox(tmp_path / "o", disk=h))
    disk.full = True
    assert not watch.probe() and h.full
    disk.full = False
    await watch.step()
    assert not h.full and not (tmp_path / ".disk-probe").exists()
