"""Following one exec's live output (SPEC §4.12): its chunks as agents publish them, until
the exec ends — then a last ``end`` event, once each pc that was sending said ``final`` (or
a short grace passed). Best effort by design: a watcher that reads too slowly is told how
many chunks it missed; the results keep the output itself (docs/live-output.md)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from kanade.backend.errors import Invalid, NotFound
from kanade.backend.messaging.live import hub
from kanade.backend.messaging.liveout import LiveRelay
from kanade.backend.services.slugs import require_slug
from kanade.backend.store import executions
from kanade.backend.store.database import Database
from kanade.backend.store.paging import Record
from kanade.core.statuses import ExecStatus

END_GRACE_S: Final = 5.0
"""After the exec ended, how long a pc that was sending gets for its last chunks."""
CHECK_S: Final = 5.0
"""How often the exec's status is read when no dashboard event says it changed."""
WAIT_S: Final = 0.5
MAX_PCS: Final = 100
"""PCs one stream may be narrowed to."""
_ENDED: Final = frozenset({ExecStatus.COMPLETED, ExecStatus.CANCELLED, ExecStatus.REJECTED})

EventKind = Literal["hello", "chunk", "dropped", "end"]


@dataclass(frozen=True)
class LiveEvent:
    """One event of a live-output stream: ``hello`` (the exec and its status), ``chunk``
    (a :class:`~kanade.core.models.wire.LiveChunk`), ``dropped`` (how many chunks this
    watcher missed, too slow), ``end`` (the exec ended; nothing follows)."""

    kind: EventKind
    data: dict[str, Any]


def _ended(row: Record | None) -> bool:
    return row is None or row["status"] in _ENDED or row["ended_at"] is not None


class LiveOutputService:
    def __init__(
        self,
        db: Database,
        relay: LiveRelay,
        *,
        end_grace_s: float = END_GRACE_S,
        check_s: float = CHECK_S,
    ) -> None:
        self._db = db
        self._relay = relay
        self._end_grace_s = end_grace_s
        self._check_s = check_s

    async def follow(
        self, exec_id: str, pcs: Iterable[str] | None = None
    ) -> AsyncIterator[LiveEvent]:
        """The events of ``exec_id``'s live output (only ``pcs`` when given). Checked here,
        before anything is streamed: an unknown exec is :class:`NotFound`."""
        require_slug(exec_id, "exec_id")
        wanted = sorted(set(pcs)) if pcs else None
        if wanted is not None:
            if len(wanted) > MAX_PCS:
                raise Invalid.at("pc", f"at most {MAX_PCS} pcs, got {len(wanted)}")
            for pc in wanted:
                require_slug(pc, "pc")
        row = await self._row(exec_id)
        if row is None:
            raise NotFound(f"no execution {exec_id!r}")
        if not _ended(row):
            self._relay.check()  # no broker, or too many streams: an error, not a stream
        return self._events(exec_id, wanted, str(row["status"]), _ended(row))

    async def _row(self, exec_id: str) -> Record | None:
        return await self._db.read(lambda conn: executions.get_execution(conn, exec_id))

    async def _events(
        self, exec_id: str, pcs: list[str] | None, status: str, ended: bool
    ) -> AsyncIterator[LiveEvent]:
        yield LiveEvent("hello", {"exec_id": exec_id, "status": status, "pcs": pcs})
        if ended:
            yield LiveEvent("end", {"exec_id": exec_id, "status": status})
            return
        async with self._relay.watch(exec_id, pcs) as watcher:
            with hub.subscribe() as changes:
                sending: set[str] = set()  # pcs that sent output and no final chunk yet
                ended_at: float | None = None
                next_check = time.monotonic() + self._check_s
                while True:
                    await watcher.wait(WAIT_S)
                    chunks, dropped = watcher.take()
                    if dropped:
                        yield LiveEvent("dropped", {"chunks": dropped})
                    for chunk in chunks:
                        if chunk.final:
                            sending.discard(chunk.pc_id)
                        else:
                            sending.add(chunk.pc_id)
                        yield LiveEvent("chunk", chunk.model_dump(exclude={"schema_"}))
                    now = time.monotonic()
                    touched = _touched(changes.take(), exec_id)
                    if ended_at is None and (touched or now >= next_check):
                        next_check = now + self._check_s
                        row = await self._row(exec_id)
                        if _ended(row):
                            ended_at = now
                            status = str(row["status"]) if row is not None else status
                    grace_over = ended_at is not None and now - ended_at >= self._end_grace_s
                    if ended_at is not None and (not sending or grace_over):
                        yield LiveEvent("end", {"exec_id": exec_id, "status": status})
                        return


def _touched(events: list[tuple[str, dict[str, Any]]], exec_id: str) -> bool:
    """Did a dashboard invalidation say this exec (or its results) changed?"""
    for topic, payload in events:
        if topic in ("execs", "results"):
            ids = payload.get("exec_ids")
            if ids is None or exec_id in ids:
                return True
    return False
