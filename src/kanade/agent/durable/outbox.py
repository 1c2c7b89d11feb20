"""The on-disk outbox (SPEC §3.5): nothing is published that was not first on disk.

Each outgoing message (result, EventStarted) is one file, written atomically (temp file,
then rename), named so that a directory listing is publish order. A drain worker
(:class:`OutboxDrain`) publishes each file to JetStream and deletes it only after the
broker's ack. Large outputs travel as attachments: files uploaded to the object store before
the message that references them is published.

A file that cannot be parsed is moved to ``bad/`` (never retried, never
blocking); a publish that fails is retried later without holding up the
files behind it. A message the disk will not take (full) is held in memory: published
from there, and written as soon as the disk takes it (docs/agent.md, "A full disk").
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from kanade.agent.durable.diskhealth import DiskHealth
from kanade.agent.durable.fsutil import atomic_write, fsync_dir, private_dir, remove
from kanade.bus.retry import Backoff
from kanade.worker import Worker

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, str], Awaitable[None]]
Upload = Callable[[str, Path], Awaitable[None]]


@dataclass
class Attachment:
    object_name: str
    path: str


@dataclass
class Envelope:
    subject: str
    msg_id: str
    data: bytes
    attachments: list[Attachment] = field(default_factory=list)
    # Told once the message is safe: written to disk or acknowledged by the broker.
    on_settled: Callable[[], None] | None = field(default=None, compare=False, repr=False)
    # False: written without fsync — for a message whose loss with the machine's power is
    # covered by another record (a "started" event: the ledger's fsync'd "launching" line
    # says the same and is what a restart reports). Survives the agent's own crash.
    durable: bool = field(default=True, compare=False)

    def settled(self) -> None:
        callback, self.on_settled = self.on_settled, None
        if callback is not None:
            callback()

    def dump(self) -> bytes:
        return json.dumps(
            {
                "subject": self.subject,
                "msg_id": self.msg_id,
                "data": base64.b64encode(self.data).decode(),
                "attachments": [a.__dict__ for a in self.attachments],
            }
        ).encode()

    @classmethod
    def load(cls, raw: bytes) -> Envelope:
        d = json.loads(raw)
        return cls(
            subject=str(d["subject"]),
            msg_id=str(d["msg_id"]),
            data=base64.b64decode(d["data"]),
            attachments=[Attachment(**a) for a in d.get("attachments", [])],
        )


class Outbox:
    """Pending messages: files on disk (the truth) plus an in-memory index of them.

    The index (file name -> envelope, in publish order) is built from the directory
    once, at start; from then on this process is the directory's only writer, so the
    drain never lists or re-reads the directory. Envelopes written by this process
    are kept decoded; files found at start are read when their turn comes.

    Sent files are recycled, not deleted: a sent message's file is renamed to a spare
    name, and the next :meth:`put` overwrites a spare and renames it into place. On
    ext4 creating an inode and freeing one (which, with the ``discard`` mount option,
    also trims its blocks) cost 10-100 times more than a rename; an agent keeps a few
    spares, a busy swarm of agents keeps its disk quiet. The write is still "write a
    temp file, then rename" (SPEC §3.5): a crash leaves either a whole message or a
    spare, and spares never match ``*.msg``.
    """

    SPARES = 4  # recycled files kept per outbox

    def __init__(
        self, directory: Path, *, durable: bool = True, disk: DiskHealth | None = None
    ) -> None:
        self.dir = directory
        self.disk = disk
        self.bad_dir = directory / "bad"
        private_dir(self.dir)
        self.durable = durable
        self._seq = itertools.count()
        # Told after every put (the drain's wake-up).
        self.on_put: Callable[[], None] = lambda: None
        self.published = 0
        self._index: dict[Path, Envelope | None] = dict.fromkeys(sorted(self.dir.glob("*.msg")))
        self._spares: list[Path] = sorted(self.dir.glob(".spare-*"))
        self._spare_seq = itertools.count(len(self._spares))
        # Pending messages the disk did not take: in the index, not (yet) on disk.
        self._unwritten: set[Path] = set()
        for leftover in self.dir.glob(".*.tmp"):  # a put() that died before its rename
            remove(leftover)

    def put(self, envelope: Envelope) -> Path:
        """Queue ``envelope`` for publishing. Never fails: a message the disk refuses is held
        in memory (published from there; written by :meth:`persist` once there is room)."""
        # time_ns + a per-process counter: unique and ordered even within one ns.
        name = f"{time.time_ns():020d}-{next(self._seq):08d}.msg"
        path = self.dir / name
        self._index[path] = envelope
        if self._unwritten or not self._write(path, envelope):
            self._unwritten.add(path)  # behind earlier held ones: written in order
        self.on_put()
        return path

    def _write(self, path: Path, envelope: Envelope) -> bool:
        data = envelope.dump()
        spare = self._spares.pop() if self._spares else None
        durable = self.durable and envelope.durable
        try:
            if spare is None or not self._overwrite(spare, path, data, durable):
                atomic_write(path, data, durable=durable)
        except OSError as exc:
            if self.disk is not None:
                self.disk.failed(exc, "the outbox")
            return False
        if self.disk is not None:
            self.disk.wrote()
        if envelope.durable:  # else safe only once the broker has it (_retire)
            envelope.settled()
        return True

    @property
    def held(self) -> int:
        """Messages held in memory because the disk would not take them."""
        return len(self._unwritten)

    def persist(self) -> bool:
        """Write the held messages, oldest first; True once none is left."""
        for path in sorted(self._unwritten):
            env = self._index.get(path)
            if env is not None and not self._write(path, env):
                return False
            self._unwritten.discard(path)
        return True

    def _overwrite(self, spare: Path, path: Path, data: bytes, durable: bool) -> bool:
        """Write ``data`` into a spare file and rename it to ``path`` (False: not possible)."""
        try:
            fd = os.open(spare, os.O_WRONLY)
        except OSError:
            return False
        try:
            os.write(fd, data)
            os.ftruncate(fd, len(data))  # after the write: no block is freed and re-allocated
            if durable:
                os.fsync(fd)
        except OSError:
            os.close(fd)
            remove(spare)
            return False
        os.close(fd)
        os.replace(spare, path)
        if durable:
            fsync_dir(self.dir)
        return True

    def _retire(self, path: Path) -> None:
        """A sent message's file becomes a spare (or goes, when there are enough)."""
        env = self._index.pop(path, None)
        if env is not None:
            env.settled()
        if path in self._unwritten:
            self._unwritten.discard(path)  # sent straight from memory: no file to recycle
            return
        if len(self._spares) < self.SPARES:
            spare = self.dir / f".spare-{next(self._spare_seq)}"
            try:
                os.replace(path, spare)
            except OSError:
                remove(path)
            else:
                self._spares.append(spare)
                return
        remove(path)

    def pending(self) -> list[Path]:
        return list(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def _envelope(self, path: Path) -> Envelope:
        """The envelope of a pending file (read from disk when found at start)."""
        env = self._index.get(path)
        if env is None:
            env = Envelope.load(path.read_bytes())
            self._index[path] = env
        return env

    def find(self, msg_id: str) -> Envelope | None:
        """The pending message with ``msg_id``, if there is one."""
        for path in self.pending():
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                env = self._envelope(path)
                if env.msg_id == msg_id:
                    return env
        return None

    def contains_msg_id(self, msg_id: str) -> bool:
        return self.find(msg_id) is not None

    def attachment_paths(self) -> set[str]:
        """Spool files still referenced by a pending message (everything else is garbage)."""
        paths: set[str] = set()
        for path in self.pending():
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                paths.update(a.path for a in self._envelope(path).attachments)
        return paths

    def _quarantine(self, path: Path, why: str) -> None:
        self._index.pop(path, None)
        private_dir(self.bad_dir)
        log.error("outbox file %s is unreadable (%s); moved to %s", path.name, why, self.bad_dir)
        with contextlib.suppress(OSError):
            path.replace(self.bad_dir / path.name)

    async def drain_once(self, publish: Publish, upload: Upload) -> tuple[int, int]:
        """Try every pending file once. Returns (sent, failed)."""
        sent = failed = 0
        for path in self.pending():
            if path not in self._index:
                continue  # sent by a drain that overlapped this one (shutdown flush)
            try:
                env = self._envelope(path)
            except FileNotFoundError:
                self._index.pop(path, None)
                continue
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._quarantine(path, str(exc))
                continue
            try:
                for att in env.attachments:
                    if Path(att.path).exists():
                        await upload(att.object_name, Path(att.path))
                await publish(env.subject, env.data, env.msg_id)
            except Exception as exc:  # broker down, ack timeout: retried later
                failed += 1
                log.debug("outbox publish of %s failed: %s", path.name, exc)
                continue
            self._retire(path)
            for att in env.attachments:
                remove(Path(att.path))
            sent += 1
            self.published += 1
        return sent, failed


class OutboxDrain(Worker):
    """Publishes whatever is pending whenever there is something and the bus is up.

    Event-driven, with no interval: it sleeps until :meth:`Outbox.put` or :meth:`wake`
    (called by the agent when the connection comes back) instead of polling, so thousands
    of idle outboxes in one swarm process cost nothing. After a pass in which a publish
    failed it retries after a jittered :class:`~kanade.bus.retry.Backoff`, which wake-ups
    do not shorten: a busy agent putting results during a broker outage must not turn the
    backoff into a retry per result.
    """

    name = "outbox drain"

    def __init__(
        self,
        outbox: Outbox,
        publish: Publish,
        upload: Upload,
        *,
        ready: Callable[[], bool],
        backoff: Backoff | None = None,
    ) -> None:
        """``backoff``: the waits after failed passes (default: jittered, 50 ms to 5 s)."""
        super().__init__(interval=math.inf)
        self.outbox = outbox
        self._publish = publish
        self._upload = upload
        self._ready = ready
        self._backoff = backoff or Backoff(base=0.05, cap=5.0)
        # Monotonic time of the retry after a failed pass (None: nothing to retry).
        self._retry_at: float | None = None
        outbox.on_put = self.wake

    async def step(self) -> None:
        if self._retry_at is not None and time.monotonic() < self._retry_at:
            return  # woken during the backoff: the retry stays where it is
        failed = 0
        if self._ready() and len(self.outbox):
            _, failed = await self.outbox.drain_once(self._publish, self._upload)
        if failed:
            self._retry_at = time.monotonic() + self._backoff.next_delay()
        else:
            self._retry_at = None
            self._backoff.reset()

    def next_delay(self, more: bool | None, failed: bool) -> float:
        if failed or self._retry_at is None:
            return super().next_delay(more, failed)
        return max(0.0, self._retry_at - time.monotonic())
