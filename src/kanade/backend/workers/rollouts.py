"""The rollout runner (SPEC §4.7): moves every running rollout's current wave one step,
reading all state from the database.

Why no wave is ever sent twice (claim → publish → mark): docs/rollouts-approvals.md, "The
rollout runner".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy.engine import Connection

from kanade.backend.messaging.exec_events import publish_audit_once, publish_exact
from kanade.backend.messaging.live import hub
from kanade.backend.store import executions
from kanade.backend.store import rollouts as store
from kanade.backend.store.database import Database
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.approvals import restamp
from kanade.core.dispatch import command_deadline
from kanade.core.instants import Clock
from kanade.core.models.wire import Command, decode, encode
from kanade.core.msgids import audit_msg_id
from kanade.core.rollout import WaveProgress
from kanade.core.statuses import WaveState
from kanade.worker import Worker

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL_S: Final = 0.5
REDISPATCH_AFTER: Final = timedelta(seconds=10)
"""A ``dispatching`` claim older than this is taken over and re-published (idempotent)."""
RUNNER_ACTOR: Final = "system:rollout"


class RolloutRunner(Worker):
    """Drives every running rollout's current wave; all state is in the database.
    :meth:`wake` (after an approval, a resume or an abort) starts the next pass at once."""

    name = "rollouts"

    def __init__(
        self,
        db: Database,
        bus: Callable[[], Bus],
        *,
        clock: Clock,
        interval_s: float = DEFAULT_INTERVAL_S,
        redispatch_after: timedelta = REDISPATCH_AFTER,
        flush: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(interval=interval_s)
        self._db = db
        self._bus = bus
        self._clock = clock
        self._redispatch_after = redispatch_after
        # Writes the rollout's state to the broker (KV kanade_state) before a wave goes
        # out: a database wiped right after still knows the wave was claimed (SPEC §1.3).
        self._flush = flush

    async def step(self) -> bool:
        moved = await self.tick()
        if moved:
            hub.publish("rollouts")  # dashboard: a wave went out or settled
        return moved  # a wave settled or went out: the next step may be due now

    async def tick(self) -> bool:
        """One pass over every running rollout; True when anything moved."""
        active = await self._db.read(store.active)
        moved = False
        for rollout, wave in active:
            try:
                moved |= await self._step(rollout, wave)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "rollout step failed; retrying next tick",
                    rollout_id=rollout["rollout_id"],
                    wave=wave["idx"],
                    error=str(exc),
                )
        return moved

    async def _step(self, rollout: dict[str, Any], wave: dict[str, Any]) -> bool:
        now = self._clock()
        state = wave["state"]
        if state == WaveState.WAITING:
            due = wave["due_at"]
            if due is None or due > now:
                return False
            return await self._dispatch(rollout, wave, now, takeover=False)
        if state == WaveState.DISPATCHING:
            if wave["claimed_at"] is not None and wave["claimed_at"] > now - self._redispatch_after:
                return False  # someone is sending it right now
            return await self._dispatch(rollout, wave, now, takeover=True)
        if state == WaveState.DISPATCHED:
            return await self._maybe_settle(rollout, wave, now)
        return False

    def _wave_command(
        self, rollout: Mapping[str, Any], wave: Mapping[str, Any], now: datetime
    ) -> str:
        template = decode(Command, str(rollout["command"]).encode())
        cmd = restamp(template, now, rollout["starting_deadline_s"])
        return encode(cmd.model_copy(update={"request_id": str(wave["request_id"])})).decode()

    async def _dispatch(
        self, rollout: dict[str, Any], wave: dict[str, Any], now: datetime, *, takeover: bool
    ) -> bool:
        rollout_id, idx = str(rollout["rollout_id"]), int(wave["idx"])
        bus = self._bus()  # raises while the broker is away: nothing claimed then
        raw = self._wave_command(rollout, wave, now)
        before = now - self._redispatch_after if takeover else None
        won = await self._db.write(
            lambda conn: store.claim(conn, rollout_id, idx, raw, now, takeover_before=before)
        )
        if not won:
            return False
        if self._flush is not None:
            try:
                await self._flush()
            except Exception as exc:
                # Sending matters more: a wipe right now could publish this wave's request
                # again (the agents' ledgers never run a request twice).
                log.warning(
                    "rollout state not written to the broker before its wave",
                    rollout_id=rollout_id,
                    wave=idx,
                    error=str(exc),
                )
        if takeover:
            raw = await self._db.read(lambda conn: store.stored_command(conn, rollout_id, idx))
            log.warning(
                "re-publishing a wave whose dispatch was interrupted (broker and agents "
                "deduplicate it)",
                rollout_id=rollout_id,
                wave=idx,
            )
        pcs = list(wave["pcs"])
        job_id = str(rollout["job_id"])
        subs = [subjects.command_subject("pc", pc, job_id) for pc in pcs]
        await publish_exact(bus, raw.encode(), str(wave["request_id"]), subs)
        sent_at = self._clock()
        # The exec's deadline (SPEC §4.3) reaches as far as this wave's command.
        deadline = command_deadline(decode(Command, raw.encode()))
        exec_id = str(rollout["exec_id"])

        def mark(conn: Connection) -> None:
            store.mark_dispatched(conn, rollout_id, idx, sent_at)
            executions.extend_deadline(conn, exec_id, deadline)

        await self._db.write(mark)
        log.info(
            "rollout wave dispatched",
            rollout_id=rollout_id,
            wave=idx,
            label=wave["label"],
            pcs=len(pcs),
            takeover=takeover,
        )
        await publish_audit_once(
            bus,
            "rollout_wave",
            RUNNER_ACTOR,
            {
                "rollout_id": rollout_id,
                "exec_id": rollout["exec_id"],
                "job_id": job_id,
                "wave": idx,
                "label": wave["label"],
                "pcs": len(pcs),
                "request_id": wave["request_id"],
            },
            audit_msg_id("rollout_wave", str(wave["request_id"])),
            sent_at,
        )
        return True

    async def _maybe_settle(
        self, rollout: dict[str, Any], wave: dict[str, Any], now: datetime
    ) -> bool:
        exec_id = str(rollout["exec_id"])
        request_id = str(wave["request_id"])

        def work(conn: Connection) -> tuple[str | None, WaveProgress | None]:
            rows = store.rows_by_wave(conn, exec_id).get(request_id, {})
            progress = store.progress_of(wave, rollout, rows, now)
            if progress is None or not progress.settled:
                return None, progress
            return store.settle(conn, rollout, wave, progress, now), progress

        decision, progress = await self._db.write(work)
        if decision is None or progress is None:
            return False
        rollout_id = str(rollout["rollout_id"])
        idx = int(wave["idx"])
        log.info(
            "rollout wave settled",
            rollout_id=rollout_id,
            wave=idx,
            decision=decision,
            failure_rate=round(progress.failure_rate, 3),
        )
        if decision in ("halt", "complete"):
            with_bus = self._bus_or_none()
            if with_bus is not None:
                await publish_audit_once(
                    with_bus,
                    "rollout_halted" if decision == "halt" else "rollout_completed",
                    RUNNER_ACTOR,
                    {
                        "rollout_id": rollout_id,
                        "exec_id": exec_id,
                        "wave": idx,
                        "failure_rate": progress.failure_rate,
                        "failed_pcs": list(progress.failed_pcs)[:100],
                        "threshold": rollout["halt_on_failure_rate"],
                    },
                    audit_msg_id(f"rollout_{decision}", request_id),
                    now,
                )
        return True

    def _bus_or_none(self) -> Bus | None:
        try:
            return self._bus()
        except Exception:
            return None
