"""Dispatching built fires: claiming their exec rows with every decision in one
transaction (the database layer of occurrence identity), then publishing marks, commands,
exec records and audits pipelined. Why a claimed row is re-published or released:
``docs/scheduler.md``, "Occurrence identity"."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

import structlog
from nats.js.errors import NotFoundError

from kanade.backend.catalog import dispatch_state
from kanade.backend.messaging.outgoing import audit_message
from kanade.backend.store import rollouts
from kanade.backend.store import scheduling as store
from kanade.backend.store.scheduling import DecisionRow
from kanade.backend.workers.scheduler.building import Planned
from kanade.backend.workers.scheduler.context import SchedulerContext
from kanade.bus.connection import Bus
from kanade.bus.publish import Outgoing, publish_one, send_pipelined, settle
from kanade.bus.retry import retry
from kanade.core import subjects
from kanade.core.instants import format_instant
from kanade.core.models.schedstate import encode_mark
from kanade.core.scheduling import DispatchMark

log = structlog.get_logger(__name__)

REPUBLISH_WINDOW: Final = timedelta(seconds=60)
"""An occurrence found already claimed but younger than this is published again (safe:
well inside the command stream's 2-min duplicate window, the broker drops a copy)."""
_FIRE_CONCURRENCY: Final = 512
_PUBLISH_ATTEMPTS: Final = 3
_RETRY_BASE_S: Final = 0.2
_RETRY_CAP_S: Final = 1.0


class Dispatcher:
    def __init__(self, ctx: SchedulerContext, marks: dict[str, dict[str, DispatchMark]]) -> None:
        self._ctx = ctx
        self._marks = marks

    # --- claiming ----------------------------------------------------------------------
    async def claim_ahead(self, planned: list[Planned], now: datetime) -> tuple[set[str], set[str]]:
        """Claim the rows of fires prepared ahead; (claimed, found claimed and young)."""
        by_exec = {p.record.exec_id: p for p in planned}

        def claim(conn: Any) -> tuple[set[str], set[str]]:
            """Claim the rows and record the decisions, as a tick at the instant would (one
            transaction): the ``fired`` decision stands with the claim, so whoever finds
            the row later — after a crash, another replica — records a duplicate, and
            the occurrence is counted once. A withdrawal takes both back."""
            claimed = store.claim_executions(conn, [p.record.row() for p in planned], now)
            existing = store.existing_executions(conn, set(by_exec) - claimed)
            young: set[str] = set()
            rows: list[DecisionRow] = []
            for exec_id, p in by_exec.items():
                if exec_id in claimed:
                    rows.append(fired_row(p, claimed=True, decided_at=p.fire.nominal))
                    continue
                created = existing.get(exec_id, {}).get("created_at")
                if isinstance(created, datetime) and now - created <= REPUBLISH_WINDOW:
                    young.add(exec_id)
                    rows.append(fired_row(p, claimed=False, decided_at=p.fire.nominal))
            store.record_decisions(conn, rows, now)
            return claimed, young

        result: tuple[set[str], set[str]] = await self._ctx.db.write(claim)
        return result

    async def release(self, exec_ids: list[str]) -> None:
        """Delete the claims of prepared fires that will not go out as prepared."""
        now = self._ctx.clock()
        await self._ctx.db.write(lambda conn: store.release_executions(conn, exec_ids, now))

    async def claim(
        self,
        bus: Bus,
        planned: list[Planned],
        rows: list[DecisionRow],
        now: datetime,
        not_fired: set[str],
    ) -> tuple[set[str], set[str]]:
        """One transaction: claim the exec rows, log every decision, bump the counters.
        Returns (claimed, to re-publish) exec ids.

        A row that exists already is re-published when it is young (the broker drops
        the copy if it had gone out) or when its exec record is not in the execs stream:
        the record goes out right behind the commands, so without it the claim was
        never followed by a publish — a fire prepared ahead whose process crashed or
        lost the lease before the instant, found again after ``REPUBLISH_WINDOW``.
        ``not_fired`` are exec ids of occurrences this tick decided not to fire (missed,
        skipped): a row claimed ahead for one of them and never published is released,
        so the occurrence is recorded as what it is, not as a fire.
        """
        by_exec = {p.record.exec_id: p for p in planned}
        ids = set(by_exec) | not_fired
        db = self._ctx.db
        before = await db.read(lambda conn: store.existing_executions(conn, ids)) if ids else {}

        def young(row: dict[str, Any] | None) -> bool:
            created = row.get("created_at") if row else None
            return isinstance(created, datetime) and now - created <= REPUBLISH_WINDOW

        suspect = [i for i, row in before.items() if i in not_fired or not young(row)]
        unpublished = await self._unpublished(bus, suspect) if suspect else set()
        release = not_fired & unpublished
        result: dict[str, set[str]] = {"claimed": set(), "republish": set()}

        def work(conn: Any) -> None:
            if release:
                store.release_executions(conn, release, now)
            claimed = store.claim_executions(conn, [p.record.row() for p in planned], now)
            existing = store.existing_executions(conn, set(by_exec) - claimed)
            republish: set[str] = set()
            for exec_id, p in by_exec.items():
                if exec_id in claimed:
                    rows.append(fired_row(p, claimed=True))
                    continue
                never = exec_id in unpublished
                again = young(existing.get(exec_id)) or never
                if again:
                    republish.add(exec_id)
                rows.append(fired_row(p, claimed=False, young=again, unpublished=never))
            store.record_decisions(conn, rows, now)
            result["claimed"], result["republish"] = claimed, republish

        if planned or rows or release:
            await db.write(work)
        for exec_id in release:
            log.warning("claim of an occurrence never published released", exec_id=exec_id)
        for exec_id in result["republish"]:
            log.warning(
                "occurrence already claimed; re-publishing for broker dedup", exec_id=exec_id
            )
        return result["claimed"], result["republish"]

    async def _unpublished(self, bus: Bus, exec_ids: list[str]) -> set[str]:
        """The execs among ``exec_ids`` whose record is not in the execs stream (kept a
        year): their messages were never published."""

        async def absent(exec_id: str) -> bool:
            try:
                await bus.js.get_last_msg(
                    subjects.STREAM_EXECS, subjects.exec_subject("created", exec_id)
                )
            except NotFoundError:
                return True
            return False

        ids = sorted(set(exec_ids))
        found = await _gather_bounded([absent(i) for i in ids], limit=64)
        return {i for i, gone in zip(ids, found, strict=True) if gone}

    # --- publishing --------------------------------------------------------------------
    async def publish(self, bus: Bus, planned: list[Planned]) -> list[float | None]:
        """Marks, then every command, then every exec record, then every audit; per fire
        the dispatch lateness in seconds (commands acked by the broker), None when its
        commands could not be published.

        The exec service publishes an exec's record before its commands so that no result
        can reach a database that never heard of the exec; here the row is already in the
        database (claimed before anything is published), so the commands — what lateness
        is about — go first, and the projector's work on the records does not compete
        with them. A crash between commands and record is repaired like any crash after
        the claim: the restarted scheduler re-decides the occurrence (its tick was not
        persisted yet) and re-publishes all of it within :data:`REPUBLISH_WINDOW`; the
        broker drops what had gone out already.

        Commands and records are sent pipelined (:func:`send_pipelined`: every message
        handed to the client at once, acks collected after), the records right behind
        the commands on the same connection; what fails is retried one by one.
        """
        if not planned:
            return []
        ctx = self._ctx
        t_start = time.perf_counter()

        async def marks(p: Planned) -> None:
            # Marks first: a crash before the commands leaves the pcs blocked until the
            # mark ends (then they fire again), never fired twice.
            for mark in p.marks:
                self._marks.setdefault(p.entry.schedule.id, {})[mark.pc_id] = mark
                await kv.put(
                    dispatch_state.mark_key(p.entry.schedule.id, mark.pc_id),
                    encode_mark(mark),
                )

        if any(p.marks for p in planned):
            kv = await bus.kv(subjects.KV_DISPATCH)
            await _gather_bounded([marks(p) for p in planned if p.marks])

        def rolled_out(p: Planned) -> bool:
            # Sent in waves by the rollout runner (kanade.backend.services.rollouts), not now.
            return p.entry.schedule.rollout is not None and not p.reconcile and bool(p.commands)

        direct = [i for i, p in enumerate(planned) if not rolled_out(p)]
        outgoing = [(i, m) for i in direct for m in planned[i].messages]
        commands_pending = await send_pipelined(bus, [m for _, m in outgoing])
        records_pending = await send_pipelined(
            bus, [p.record_message for p in planned if p.record_message is not None]
        )
        t_sent = time.perf_counter()

        failed: dict[int, list[Outgoing]] = {}
        for (i, msg), error in zip(outgoing, await settle(commands_pending), strict=True):
            if error is not None:
                failed.setdefault(i, []).append(msg)
        acked = ctx.clock()
        sent_at: list[datetime | None] = [None] * len(planned)
        for i in direct:
            if i not in failed:
                sent_at[i] = acked
        for i, msgs in failed.items():
            step = functools.partial(_publish_each, bus, msgs)
            if await _retried(planned[i], "commands", step, attempts=_PUBLISH_ATTEMPTS - 1):
                sent_at[i] = ctx.clock()
        for i, p in enumerate(planned):
            rollout = p.entry.schedule.rollout
            if rolled_out(p) and rollout is not None:
                step = functools.partial(
                    rollouts.start_for_schedule,
                    ctx.db,
                    p.record,
                    p.commands[0][0],
                    rollout,
                    now=ctx.clock(),
                )
                if await _retried(p, "commands", step, attempts=_PUBLISH_ATTEMPTS):
                    sent_at[i] = ctx.clock()

        lateness: list[float | None] = []
        for p, at in zip(planned, sent_at, strict=True):
            if at is None:
                lateness.append(None)
                continue
            late = (at - p.fire.nominal).total_seconds()
            lateness.append(late)
            ctx.metrics.lateness.observe(max(0.0, late))
            log.debug(
                "scheduled fire dispatched",
                schedule_id=p.entry.schedule.id,
                exec_id=p.record.exec_id,
                nominal=format_instant(p.fire.nominal),
                pcs=len(p.pcs),
                late_ms=round(late * 1000, 1),
                caught_up=p.fire.caught_up,
            )

        with_record = [p for p in planned if p.record_message is not None]
        for p, error in zip(with_record, await settle(records_pending), strict=True):
            if error is not None:
                assert p.record_message is not None
                step = functools.partial(publish_one, bus, p.record_message)
                await _retried(p, "record", step, attempts=_PUBLISH_ATTEMPTS - 1)

        good = [p for p, late in zip(planned, lateness, strict=True) if late is not None]
        audits = [audit_message(p.record, p.commands[0][0]) for p in good]
        for p, msg, error in zip(
            good, audits, await settle(await send_pipelined(bus, audits)), strict=True
        ):
            if error is not None:
                try:
                    await publish_one(bus, msg)
                except Exception:
                    # The commands are out: nothing to undo. Log loudly instead.
                    log.exception("audit record not written", exec_id=p.record.exec_id)
        log.debug(
            "scheduled fires published",
            fires=len(planned),
            send_ms=round((t_sent - t_start) * 1000, 1),
            total_ms=round((time.perf_counter() - t_start) * 1000, 1),
        )
        return lateness


def fired_row(
    p: Planned,
    *,
    claimed: bool,
    young: bool = True,
    unpublished: bool = False,
    decided_at: datetime | None = None,
) -> DecisionRow:
    """The decision row of a built fire: ``fired`` when this process claimed its row,
    else ``duplicate`` (re-published when ``young`` or ``unpublished``)."""
    fire = p.fire
    exec_id = p.record.exec_id
    if claimed:
        detail = f"dispatched to {len(p.pcs)} pc(s)"
        if fire.caught_up:
            detail += " (catch-up: ran once on recovery)"
        if p.note:
            detail += f"; {p.note}"
        return DecisionRow(
            p.entry.schedule.id,
            fire.occurrence_id,
            fire.nominal,
            "fired",
            "caught_up" if fire.caught_up else None,
            detail,
            exec_id=exec_id,
            pcs=len(p.pcs),
            lateness_s=fire.late.total_seconds(),
            decided_at=decided_at,
        )
    if unpublished:
        detail = (
            "the exec row of this occurrence exists but its messages were never "
            "published (claimed ahead of a crash or a lost lease): published now"
        )
    else:
        detail = (
            "the exec row of this occurrence exists: fired before (restart, "
            "another backend or a clock step)"
            + ("; re-published for the broker to deduplicate" if young else "")
        )
    return DecisionRow(
        p.entry.schedule.id,
        fire.occurrence_id,
        fire.nominal,
        "duplicate",
        "already_fired",
        detail,
        exec_id=exec_id,
        decided_at=decided_at,
    )


async def _publish_each(bus: Bus, messages: list[Outgoing]) -> None:
    await asyncio.gather(*(publish_one(bus, m) for m in messages))


async def _retried(p: Planned, what: str, step: Callable[[], Any], *, attempts: int) -> bool:
    """``step`` until it succeeds, at most ``attempts`` times (with a short backoff);
    False, logged, when the last attempt failed too."""
    try:
        await retry(step, attempts=attempts, base=_RETRY_BASE_S, cap=_RETRY_CAP_S)
    except Exception as exc:
        log.error(
            "scheduled fire not published",
            step=what,
            exec_id=p.record.exec_id,
            schedule_id=p.entry.schedule.id,
            error=str(exc),
        )
        return False
    return True


async def _gather_bounded(coros: list[Any], limit: int = _FIRE_CONCURRENCY) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(coro: Any) -> Any:
        async with gate:
            return await coro

    return list(await asyncio.gather(*(run(c) for c in coros)))
