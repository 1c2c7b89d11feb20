"""The agent's on-disk outbox: order, recycling of sent files, restart and bad files; its drain."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kanade.agent.durable.outbox import Attachment, Envelope, Outbox, OutboxDrain
from kanade.bus.retry import Backoff
from polling import eventually


class Sink:
    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.sent: list[tuple[str, bytes, str]] = []
        self.uploads: list[str] = []
        self.fail_on = fail_on or set()

    async def publish(self, subject: str, data: bytes, msg_id: str) -> None:
        if msg_id in self.fail_on:
            raise ConnectionError("broker down")
        self.sent.append((subject, data, msg_id))

    async def upload(self, name: str, path: Path) -> None:
        self.uploads.append(name)


def drain(box: Outbox, sink: Sink) -> tuple[int, int]:
    return asyncio.run(box.drain_once(sink.publish, sink.upload))


def env(i: int, size: int = 10) -> Envelope:
    return Envelope(f"kanade.result.pc-{i}", f"m{i}", bytes([65 + i % 26]) * size)


def test_published_in_put_order_and_sent_files_are_recycled(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o", durable=False)
    for i in range(10):
        box.put(env(i))
    assert len(box) == 10 and len(list((tmp_path / "o").glob("*.msg"))) == 10
    sink = Sink()
    assert drain(box, sink) == (10, 0)
    assert [m for _, _, m in sink.sent] == [f"m{i}" for i in range(10)]
    assert len(box) == 0 and not list((tmp_path / "o").glob("*.msg"))
    # At most SPARES files stay behind, hidden from the *.msg listing.
    spares = sorted((tmp_path / "o").glob(".spare-*"))
    assert len(spares) == Outbox.SPARES
    inodes = {p.stat().st_ino for p in spares}
    # The next messages reuse those files (same inodes) instead of creating new ones.
    paths = [box.put(env(i, size=3)) for i in range(2)]
    assert {p.stat().st_ino for p in paths} <= inodes
    assert len(list((tmp_path / "o").glob(".spare-*"))) == Outbox.SPARES - 2


def test_a_recycled_file_holds_exactly_the_new_message(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o", durable=True)
    box.put(env(1, size=5000))  # long
    drain(box, Sink())
    path = box.put(env(2, size=7))  # short, written over the long one
    assert Envelope.load(path.read_bytes()) == env(2, size=7)


@pytest.mark.parametrize("recycled", [False, True])
def test_a_message_another_record_covers_is_written_without_fsync_and_settled_on_send(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recycled: bool
) -> None:
    """``durable=False`` (a started event, a result the ledger holds): no fsync of the file
    or the directory — and "safe" is said only once the broker has it, not when written."""
    box = Outbox(tmp_path / "o", durable=True)
    if recycled:  # a spare file is overwritten rather than a new one created
        box.put(env(9))
        drain(box, Sink())
    synced: list[int] = []
    monkeypatch.setattr("os.fsync", synced.append)
    settled: list[str] = []
    covered = Envelope("kanade.result.pc-1", "m1", b"r", on_settled=lambda: settled.append("m1"))
    covered.durable = False
    box.put(covered)
    assert synced == [] and settled == [] and len(box) == 1
    assert drain(box, Sink()) == (1, 0)
    assert settled == ["m1"]
    box.put(Envelope("kanade.result.pc-1", "m2", b"r", on_settled=lambda: settled.append("m2")))
    assert len(synced) == 2 and settled == ["m1", "m2"]  # a durable one: file and directory


def test_a_restart_finds_pending_files_in_order_and_reuses_spares(tmp_path: Path) -> None:
    first = Outbox(tmp_path / "o", durable=False)
    for i in range(Outbox.SPARES + 3):
        first.put(env(i))
    drain(first, Sink())
    for i in range(3):
        first.put(env(100 + i))
    # Crash debris: a temp file from a put() that never reached its rename.
    (tmp_path / "o" / ".x.msg.123.tmp").write_bytes(b"half")

    again = Outbox(tmp_path / "o", durable=False)
    assert len(again) == 3
    assert not list((tmp_path / "o").glob("*.tmp"))
    sink = Sink()
    assert drain(again, sink) == (3, 0)
    assert [m for _, _, m in sink.sent] == ["m100", "m101", "m102"]
    assert [d for _, d, _ in sink.sent] == [env(100 + i).data for i in range(3)]
    assert len(list((tmp_path / "o").glob(".spare-*"))) == Outbox.SPARES


def test_a_failed_publish_keeps_the_file_and_does_not_block_the_rest(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o", durable=False)
    for i in range(3):
        box.put(env(i))
    sink = Sink(fail_on={"m1"})
    assert drain(box, sink) == (2, 1)
    assert [m for _, _, m in sink.sent] == ["m0", "m2"]
    assert len(box) == 1
    sink.fail_on.clear()
    assert drain(box, sink) == (1, 0)
    assert len(box) == 0


def test_a_corrupt_file_is_quarantined(tmp_path: Path) -> None:
    d = tmp_path / "o"
    d.mkdir()
    (d / "00000000000000000000-00000000.msg").write_bytes(b"\x00 not json")
    box = Outbox(d, durable=False)
    box.put(env(1))
    sink = Sink()
    assert drain(box, sink) == (1, 0)
    assert (d / "bad" / "00000000000000000000-00000000.msg").exists()
    assert len(box) == 0


def test_attachments_are_uploaded_first_and_tracked(tmp_path: Path) -> None:
    spool = tmp_path / "spool.out"
    spool.write_bytes(b"big output")
    box = Outbox(tmp_path / "o", durable=False)
    e = Envelope("kanade.result.pc-1", "r1", b"{}", [Attachment("r1/stdout", str(spool))])
    box.put(e)
    assert box.attachment_paths() == {str(spool)}
    assert box.contains_msg_id("r1") and not box.contains_msg_id("r2")
    sink = Sink()
    drain(box, sink)
    assert sink.uploads == ["r1/stdout"] and not spool.exists()


@pytest.mark.parametrize("durable", [True, False])
def test_many_rounds_keep_the_directory_small(tmp_path: Path, durable: bool) -> None:
    box = Outbox(tmp_path / "o", durable=durable)
    sink = Sink()
    for round_ in range(20):
        for i in range(3):
            box.put(env(round_ * 3 + i))
        drain(box, sink)
    assert len(sink.sent) == 60
    assert len(list((tmp_path / "o").iterdir())) <= Outbox.SPARES


# --- the drain worker ---------------------------------------------------------------------------
class FixedBackoff(Backoff):
    """Waits ``delay`` after every failed pass (no jitter, so a test can reason about it)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def next_delay(self) -> float:
        self.attempt += 1
        return self.delay


async def test_the_drain_publishes_what_is_put_while_the_bus_is_up(tmp_path: Path) -> None:
    box, sink = Outbox(tmp_path / "o", durable=False), Sink()
    up = False
    drain = OutboxDrain(box, sink.publish, sink.upload, ready=lambda: up)
    task = asyncio.create_task(drain.run())
    try:
        box.put(env(1))
        up = True
        drain.wake()  # what the agent does on (re)connect
        await eventually(lambda: [m for _, _, m in sink.sent] == ["m1"], "first message sent")
        box.put(env(2))  # the put itself wakes the drain
        await eventually(lambda: len(box) == 0 and len(sink.sent) == 2, "second message sent")
    finally:
        drain.stop()
        await asyncio.wait_for(task, 5)


async def test_a_failed_publish_waits_out_its_backoff_even_when_woken(tmp_path: Path) -> None:
    box, sink = Outbox(tmp_path / "o", durable=False), Sink(fail_on={"m1"})
    backoff = FixedBackoff(3600)
    drain = OutboxDrain(box, sink.publish, sink.upload, ready=lambda: True, backoff=backoff)
    box.put(env(1))
    await drain.step()
    assert backoff.attempt == 1 and len(box) == 1
    assert 3500 < drain.next_delay(None, failed=False) <= 3600
    sink.fail_on.clear()
    box.put(env(2))  # a wake-up during the backoff: the retry stays where it was
    await drain.step()
    assert not sink.sent and len(box) == 2
    backoff.delay = 0.0
    drain._retry_at = 0.0  # the backoff is over
    await drain.step()
    assert [m for _, _, m in sink.sent] == ["m1", "m2"]
    assert backoff.attempt == 0  # reset by the successful pass
    assert drain.next_delay(None, failed=False) == drain.interval  # idle: wait for a put
