"""The on-disk outbox (SPEC §3.5): nothing is published that was not first on disk.

Each outgoing message (result, EventStarted) is one file, written atomically,
named so that a directory listing is publish order. A drain task publishes
each file to JetStream and deletes it only after the broker's ack. Large
outputs travel as attachments: files uploaded to the object store before the
message that references them is published.

A file that cannot be parsed is moved to ``bad/`` (never retried, never
blocking); a publish that fails is retried later without holding up the
files behind it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from kanade.agent.fsutil import atomic_write, remove

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
    def __init__(self, directory: Path, *, durable: bool = True) -> None:
        self.dir = directory
        self.bad_dir = directory / "bad"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.durable = durable
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self.published = 0

    def put(self, envelope: Envelope) -> Path:
        # time_ns + a per-process counter: unique and ordered even within one ns.
        name = f"{time.time_ns():020d}-{next(self._seq):08d}.msg"
        path = self.dir / name
        atomic_write(path, envelope.dump(), durable=self.durable)
        self._wake.set()
        return path

    def pending(self) -> list[Path]:
        return sorted(self.dir.glob("*.msg"))

    def __len__(self) -> int:
        return len(self.pending())

    def contains_msg_id(self, msg_id: str) -> bool:
        for path in self.pending():
            with contextlib.suppress(OSError, ValueError, KeyError):
                if Envelope.load(path.read_bytes()).msg_id == msg_id:
                    return True
        return False

    def attachment_paths(self) -> set[str]:
        """Spool files still referenced by a pending message (everything else is garbage)."""
        paths: set[str] = set()
        for path in self.pending():
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                paths.update(a.path for a in Envelope.load(path.read_bytes()).attachments)
        return paths

    def _quarantine(self, path: Path, why: str) -> None:
        self.bad_dir.mkdir(exist_ok=True)
        log.error("outbox file %s is unreadable (%s); moved to %s", path.name, why, self.bad_dir)
        with contextlib.suppress(OSError):
            path.replace(self.bad_dir / path.name)

    async def drain_once(self, publish: Publish, upload: Upload) -> tuple[int, int]:
        """Try every pending file once. Returns (sent, failed)."""
        sent = failed = 0
        for path in self.pending():
            try:
                env = Envelope.load(path.read_bytes())
            except FileNotFoundError:
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
            remove(path)
            for att in env.attachments:
                remove(Path(att.path))
            sent += 1
            self.published += 1
        return sent, failed

    async def drain_forever(
        self,
        publish: Publish,
        upload: Upload,
        *,
        ready: Callable[[], bool],
        max_backoff: float = 5.0,
    ) -> None:
        """Publish whatever is pending whenever there is something and the bus is up.

        Event-driven: it sleeps until :meth:`put` or :meth:`wake` (called by the
        agent when the connection comes back) instead of polling, so thousands of
        idle outboxes in one swarm process cost nothing.
        """
        backoff = 0.05
        while True:
            self._wake.clear()
            failed = 0
            if ready() and self.pending():
                _, failed = await self.drain_once(publish, upload)
            if failed:
                await asyncio.sleep(backoff)
                backoff = min(max_backoff, backoff * 2)
                continue
            backoff = 0.05
            await self._wake.wait()

    def wake(self) -> None:
        self._wake.set()
