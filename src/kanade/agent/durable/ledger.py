"""The durable admission ledger (SPEC §3.2): every command admitted exactly once per pc.

An fsync'd journal of each request_id's moves (pending → launching → finished), replayed at
start. Why each state and the crash rules: docs/agent.md, "The admission ledger"; what it
does when the disk is full: docs/agent.md, "A full disk".
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from kanade.agent.durable.diskhealth import DiskHealth
from kanade.agent.durable.fsutil import fsync_dir, open_private, private_dir, remove
from kanade.core.signing import COMMAND_LIFETIME, MAX_FUTURE_SKEW

log = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"
# Compact when the journal holds this many more lines than live entries.
_COMPACT_SLACK = 2000
REPLAY_HORIZON_S = (COMMAND_LIFETIME + MAX_FUTURE_SKEW).total_seconds()
"""How long an admitted request_id must be remembered: a command is accepted until its
signed expiry, at most this long after it was admitted, so a replay always meets it."""


class Admission(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass
class Entry:
    request_id: str
    digest: str
    state: str  # pending | launching | finished
    admitted_at: float
    updated_at: float
    command: str  # the command JSON as received, so a pending one can run after a crash
    result: str | None = None
    queued: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def command_digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class Ledger:
    def __init__(
        self,
        directory: Path,
        *,
        retention_s: float = 8 * 86400,
        max_entries: int = 50_000,
        durable: bool = True,
        disk: DiskHealth | None = None,
    ) -> None:
        if retention_s < REPLAY_HORIZON_S:
            raise ValueError(
                f"ledger retention {retention_s:g}s is shorter than the command lifetime "
                f"({REPLAY_HORIZON_S:g}s): a replayed command could run twice"
            )
        self.dir = directory
        private_dir(self.dir)
        self.path = directory / JOURNAL
        self.retention_s = retention_s
        self.max_entries = max_entries
        self.durable = durable
        self.disk = disk
        self._entries: dict[str, Entry] = {}
        self._fd: int | None = None
        self._size = 0  # bytes of whole lines in the journal (where the next one starts)
        self._lines = 0
        # Lines the disk did not take (full): written, in order, before any later line.
        self._backlog: list[tuple[bytes, bool]] = []

    # --- journal -------------------------------------------------------------------
    def _open(self) -> int:
        if self._fd is None:
            # kept open for appends; owner-only: the journal holds full commands (env too)
            self._fd = open_private(self.path, os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def _write_line(self, line: bytes, durable: bool) -> None:
        """Append one whole line, or nothing: a write the disk refused half-way is cut off
        again, so the next line never lands glued to a torn one."""
        fd = self._open()
        try:
            view, done = memoryview(line), 0
            while done < len(line):
                done += os.write(fd, view[done:])
            if durable:
                os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):  # shrinking needs no space
                os.ftruncate(fd, self._size)
            raise
        self._size += len(line)
        self._lines += 1

    def _append(
        self, record: dict[str, Any], *, durable: bool | None = None, must: bool = True
    ) -> bool:
        """Write one journal line. ``must``: the caller cannot go on without it (admission
        before the broker's ack, launching before the script starts), so a failure raises;
        otherwise the line waits in memory for :meth:`flush_backlog` and False is returned."""
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        durable = self.durable if durable is None else durable
        try:
            if self._backlog and not self.flush_backlog():
                raise OSError(errno.ENOSPC, "earlier ledger lines still wait for the disk")
            self._write_line(line, durable)
        except OSError as exc:
            if self.disk is not None:
                self.disk.failed(exc, "the ledger")
            if must:
                raise
            self._backlog.append((line, durable))
            return False
        if self.disk is not None:
            self.disk.wrote()
        return True

    @property
    def backlog(self) -> int:
        """Journal lines held in memory because the disk would not take them."""
        return len(self._backlog)

    def flush_backlog(self) -> bool:
        """Write the lines the disk refused earlier, in order; True once none is left."""
        while self._backlog:
            line, durable = self._backlog[0]
            try:
                self._write_line(line, durable)
            except OSError as exc:
                if self.disk is not None:
                    self.disk.failed(exc, "the ledger")
                return False
            self._backlog.pop(0)
            if self.disk is not None:
                self.disk.wrote()
        return True

    def _write_entry(self, entry: Entry, *, durable: bool | None = None, must: bool = True) -> bool:
        # vars() rather than dataclasses.asdict(): no deep copy on the hot path.
        return self._append(dict(vars(entry)), durable=durable, must=must)

    def _write_change(
        self, entry: Entry, *, durable: bool | None = None, must: bool = True, **changes: Any
    ) -> bool:
        """A transition line: only what changed, so the command is not copied again."""
        return self._append({"request_id": entry.request_id, **changes}, durable=durable, must=must)

    def load(self) -> None:
        """Replay the journal. Undecodable lines (a torn write) are skipped with a warning."""
        self._entries.clear()
        self._lines = 0
        self._backlog.clear()
        if not self.path.exists():
            return
        whole = 0  # where the last complete line ends
        with open(self.path, "rb") as fh:
            for number, line in enumerate(fh, 1):
                self._lines += 1
                if line.endswith(b"\n"):
                    whole += len(line)
                try:
                    record = json.loads(line)
                    rid = record["request_id"]
                    if "digest" in record:
                        self._entries[rid] = Entry(**record)
                    elif rid in self._entries:
                        for key, value in record.items():
                            setattr(self._entries[rid], key, value)
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("ledger journal line %d is unreadable (%s); skipped", number, exc)
        if whole < self.path.stat().st_size:
            # A torn last line (a crash mid-write): cut it off, or the next line would be
            # appended to it and be unreadable too.
            with contextlib.suppress(OSError):
                os.truncate(self.path, whole)
        self._maybe_compact()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _maybe_compact(self, *, force: bool = False) -> None:
        if not force and self._lines - len(self._entries) < _COMPACT_SLACK:
            return
        tmp = self.path.with_suffix(".compact")
        try:
            with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as fh:
                for entry in self._entries.values():
                    fh.write(json.dumps(asdict(entry), separators=(",", ":")).encode() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            # No room for the new copy: keep appending to the old journal, try again later.
            remove(tmp)
            if self.disk is not None:
                self.disk.failed(exc, "the ledger")
            return
        self.close()
        fsync_dir(self.dir)
        self._lines = len(self._entries)
        # The new journal was written from memory, which already holds every held change.
        self._backlog.clear()

    # --- transitions ---------------------------------------------------------------
    def admit(
        self,
        request_id: str,
        digest: str,
        command: str,
        now: float,
        *,
        extra: dict[str, str] | None = None,
        must_write: bool = True,
    ) -> Admission:
        """Admit ``request_id`` (written before the caller acks the broker; an OSError when
        the disk refuses). ``must_write=False``: a command refused because the disk is full
        is admitted in memory at once and written when the disk takes it again, so a replay
        meanwhile is still recognised."""
        existing = self.seen(request_id, digest)
        if existing is not None:
            return existing
        entry = Entry(request_id, digest, "pending", now, now, command, extra=dict(extra or {}))
        self._write_entry(entry, must=must_write)
        self._entries[request_id] = entry
        return Admission.NEW

    def seen(self, request_id: str, digest: str) -> Admission | None:
        """DUPLICATE or CONFLICT for a request_id already admitted, None for a new one."""
        existing = self._entries.get(request_id)
        if existing is None:
            return None
        return Admission.DUPLICATE if existing.digest == digest else Admission.CONFLICT

    def mark_launching(self, request_id: str, now: float) -> None:
        """Raises OSError when the disk refuses: the script must not start unrecorded."""
        entry = self._entries[request_id]
        self._write_change(entry, state="launching", updated_at=now)
        entry.state, entry.updated_at = "launching", now

    def mark_finished(self, request_id: str, result: str, now: float) -> bool:
        """Record the result; False when the disk refused and the line waits in memory
        (:meth:`flush_backlog`) — never raises: a finished result must not be lost."""
        entry = self._entries[request_id]
        entry.state, entry.updated_at, entry.result, entry.queued = "finished", now, result, False
        return self._write_change(
            entry, must=False, state="finished", updated_at=now, result=result, queued=False
        )

    def mark_queued(self, request_id: str) -> None:
        """The result reached the outbox (or the broker). Not fsync'd: losing this only
        causes a harmless re-send (the broker and the backend both dedup by result_id)."""
        entry = self._entries.get(request_id)
        if entry is not None and not entry.queued:
            entry.queued = True
            self._write_change(entry, durable=False, must=False, queued=True)

    # --- queries -------------------------------------------------------------------
    def get(self, request_id: str) -> Entry | None:
        return self._entries.get(request_id)

    def in_state(self, state: str) -> list[Entry]:
        return sorted(
            (e for e in self._entries.values() if e.state == state), key=lambda e: e.admitted_at
        )

    def __len__(self) -> int:
        return len(self._entries)

    def prune(self, now: float) -> int:
        """Drop finished, queued entries past retention, then the oldest beyond the bound —
        never one a replay could still match (admitted within the replay horizon)."""
        done = [e for e in self._entries.values() if e.state == "finished" and e.queued]
        victims = [e for e in done if now - e.updated_at > self.retention_s]
        overflow = len(self._entries) - len(victims) - self.max_entries
        if overflow > 0:
            gone = {e.request_id for e in victims}
            rest = sorted(
                (
                    e
                    for e in done
                    if e.request_id not in gone and now - e.admitted_at > REPLAY_HORIZON_S
                ),
                key=lambda e: e.updated_at,
            )
            victims += rest[:overflow]
        for e in victims:
            self._entries.pop(e.request_id, None)
        if victims:
            # Dropped entries still have lines in the journal: compaction removes them.
            self._maybe_compact(force=True)
        return len(victims)
