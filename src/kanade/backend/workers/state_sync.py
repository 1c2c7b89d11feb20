"""Operator state between the database and KV ``kanade_state`` (SPEC §1.3).

* :meth:`StateSync.start` — once per process, when the broker is first reached: a database
  being rebuilt (wiped, or new) gets back every row the bucket holds (users, approvals,
  unattended approvals, rollouts with their waves, schedule counters and decisions), learns
  its generation, and every row the bucket lacks (a database older than this mechanism, a
  broker that lost its store) is queued to be written;
* :meth:`StateSync.publish_pending` — the rows changed since their document was written
  (``state_outbox``) go out, each as a compare-and-set that never replaces a newer document;
* :meth:`StateSync.flush` — the same, awaited by a caller that must not go on before its
  change is safe in the broker (the rollout runner, before it sends a wave).

Why documents and not a stream of changes, and the ordering rule: docs/backend.md,
"A wiped database comes back whole".
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog
from sqlalchemy.engine import Connection

from kanade.backend.store import projection_state, state_docs, state_outbox
from kanade.backend.store.database import Database
from kanade.backend.store.state_outbox import Pending
from kanade.bus.connection import Bus
from kanade.bus.kvcas import compare_and_set
from kanade.bus.kvsnapshot import kv_key_names, kv_snapshot
from kanade.core import subjects
from kanade.core.instants import system_clock
from kanade.core.models.opstate import StateDoc, state_key
from kanade.core.models.wire import WireDecodeError, decode

log = structlog.get_logger(__name__)

GEN_KEY: Final = "state_gen"
"""``projection_state`` key: this database's generation (documents it writes carry it)."""
BATCH: Final = 500
"""Documents written per pass at most."""
_CONCURRENCY: Final = 64


@dataclass(frozen=True)
class StartReport:
    gen: int
    restored: int
    queued: int
    refused: int


def _decode_docs(raw: dict[str, tuple[bytes, int]]) -> list[StateDoc]:
    docs: list[StateDoc] = []
    for key, (value, _rev) in sorted(raw.items()):
        try:
            doc = decode(StateDoc, value)
        except WireDecodeError as exc:
            log.error("operator-state document unreadable; skipped", key=key, error=str(exc))
            continue
        if doc.key != key:
            log.error("operator-state document under a foreign key; skipped", key=key)
            continue
        docs.append(doc)
    return docs


class StateSync:
    """The database's operator state mirrored in KV ``kanade_state`` (one per process)."""

    def __init__(self, db: Database, bus: Callable[[], Bus], *, batch: int = BATCH) -> None:
        self._db = db
        self._bus = bus
        self.batch = batch
        self._lock = asyncio.Lock()
        self.gen: int | None = None
        """None until :meth:`start` ran: nothing is published before the generation is known."""
        self.started = asyncio.Event()

    # --- start-up ---------------------------------------------------------------------------
    async def start(self, bus: Bus, *, rebuild: bool) -> StartReport:
        """Restore (``rebuild``: the database is being rebuilt from the broker), settle the
        generation and queue what the bucket lacks. Idempotent; raises while the broker is
        away (the caller retries with the rest of its start-up)."""
        js = bus.js
        known_gen = await self._db.read(lambda c: projection_state.get_state(c, GEN_KEY))
        docs: list[StateDoc] = []
        if rebuild or known_gen is None:
            docs = _decode_docs(await kv_snapshot(js, subjects.KV_STATE))
            present = {d.key for d in docs}
        else:
            present = set(await kv_key_names(js, subjects.KV_STATE))
        restored, refused = (await self._restore(docs)) if rebuild else (0, 0)
        newest = max((d.gen for d in docs), default=0)

        def settle(conn: Connection) -> tuple[int, int]:
            gen = projection_state.get_state(conn, GEN_KEY)
            if gen is None:
                # A database the bucket has not seen: its documents outrank every older one.
                gen = str(newest + 1)
                projection_state.set_state_if_absent(conn, GEN_KEY, gen, system_clock())
            missing = [
                (kind, ref)
                for kind, ref in state_docs.all_refs(conn)
                if state_key(kind, ref) not in present
            ]
            for kind, ref in missing:
                state_outbox.touch(conn, kind, *ref)
            return int(gen), len(missing)

        gen, queued = await self._db.write(settle)
        self.gen = gen
        self.started.set()
        report = StartReport(gen, restored, queued, refused)
        log.info(
            "operator state ready",
            gen=gen,
            rebuilt=rebuild,
            restored=restored,
            queued=queued,
            refused=refused,
        )
        return report

    async def _restore(self, docs: list[StateDoc]) -> tuple[int, int]:
        """Write every document's rows where the database has none: (restored, refused)."""
        if not docs:
            return 0, 0

        def all_at_once(conn: Connection) -> int:
            return sum(state_docs.restore(conn, d) for d in docs)

        try:
            return await self._db.write(all_at_once), 0
        except Exception as exc:
            log.warning("restoring operator state one document at a time", error=str(exc))
        restored = refused = 0
        for doc in docs:
            try:
                restored += await self._db.write(functools.partial(state_docs.restore, doc=doc))
            except Exception as exc:
                refused += 1
                log.error("operator-state document not restored", key=doc.key, error=str(exc))
        return restored, refused

    # --- publishing ---------------------------------------------------------------------------
    async def publish_pending(self) -> int:
        """Write up to one batch of changed documents; how many went out."""
        gen = self.gen
        if gen is None:
            return 0
        async with self._lock:
            batch = await self._db.read(self._read_batch)
            if not batch:
                return 0
            kv = await self._bus().kv(subjects.KV_STATE)
            gate = asyncio.Semaphore(_CONCURRENCY)

            async def put(p: Pending, rows: state_docs.Rows | None) -> Pending | None:
                doc = StateDoc(
                    kind=p.kind,
                    ref=list(p.ref),
                    gen=gen,
                    seq=p.seq,
                    deleted=rows is None,
                    rows=rows or {},
                )

                def newer(old: bytes | None) -> bytes | None:
                    if old is not None:
                        try:
                            if not doc.newer_than(decode(StateDoc, old)):
                                return old  # someone wrote a newer one: keep it
                        except WireDecodeError:
                            pass  # unreadable: replaced
                    return doc.encode()

                async with gate:
                    try:
                        await compare_and_set(kv, p.key, newer)
                    except Exception as exc:
                        log.error("operator state not written", key=p.key, error=str(exc))
                        return None
                return p

            written = [
                p for p in await asyncio.gather(*(put(p, rows) for p, rows in batch)) if p
            ]
            if written:
                await self._db.write(lambda conn: state_outbox.done(conn, written))
            return len(written)

    def _read_batch(self, conn: Connection) -> list[tuple[Pending, state_docs.Rows | None]]:
        """The next changed keys and their rows, read in one snapshot."""
        return [
            (p, state_docs.snapshot(conn, p.kind, p.ref))
            for p in state_outbox.pending(conn, self.batch)
        ]

    async def flush(self, *, rounds: int = 50) -> None:
        """Publish until nothing is pending (raises when the broker refuses: the caller's
        change is then not known to be safe)."""
        await self.started.wait()
        for _ in range(rounds):
            written = await self.publish_pending()
            left = await self._db.read(state_outbox.backlog)
            if not left:
                return
            if not written:
                raise RuntimeError(f"{left} operator-state change(s) not written to the broker")
        raise RuntimeError("operator state still changing after many rounds")


__all__ = ["BATCH", "GEN_KEY", "StartReport", "StateSync"]
