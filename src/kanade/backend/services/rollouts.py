"""Durable rollouts (SPEC §4.7): an exec sent to its target in waves, driven from the DB.

Data model (``rollouts`` and ``rollout_waves``, revision 0004; rollout_id = exec_id):

* the rollout row: status (``awaiting_approval`` → ``running`` → ``completed``, or
  ``halted`` ⇄ ``running``, ``aborted``, ``rejected``), the current wave index, the
  halt threshold, the command *template* (the exec's wire command) and how long a wave
  may take before its silent pcs count as missing;
* one row per wave, written when the rollout is created: its pcs (fixed then — the
  percentage split of :mod:`kanade.core.rollout` is computed once, from the exec's
  expected pcs in sorted order), delay, state ``waiting → dispatching → dispatched →
  settled`` (or ``cancelled``), ``due_at``, its deterministic ``request_id``
  (``<exec_id>-w<n>``), the exact command bytes published, and the settled counts.

Nothing about a rollout lives in memory: :class:`RolloutRunner` (a backend task) reads
the running rollouts every tick and moves each current wave one step.

**No wave is ever sent twice.** Dispatch is claim → publish → mark:

1. *claim*: one transaction flips the wave ``waiting → dispatching`` (a compare-and-set
   that also requires the rollout to be ``running`` with this wave current) and stores
   the exact command bytes (issued_at = claim time). Only one claimer can win, in this
   process or another replica on the same database; a wave past ``dispatching`` is never
   published again by anyone;
2. *publish* those bytes to each pc's command subject with ``Nats-Msg-Id =
   <request_id>:<subject>``;
3. *mark* ``dispatched`` after every publish was acked.

A crash between 1 and 3 leaves the wave ``dispatching``; once the claim is older than
``redispatch_after`` (10 s) the runner takes it over and publishes the **stored bytes**
again: inside the command stream's 2-minute duplicate window the broker drops each
copy (same msg id), and beyond it the agent's admission ledger recognises the request id
with identical content as a duplicate and does not run it. The command stream keeps one
message per subject, so a copy never queues behind itself either.

Wave timing: a wave is due ``delay`` after the previous wave *settled* (every pc
finished, or the settle horizon passed); ``settled_at`` is taken from the data, so a
backend restart neither shifts nor repeats anything, and a wave whose due time passed
while the backend was down is sent at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection

from kanade.backend.errors import Conflict, NotFound
from kanade.backend.messaging.live import hub
from kanade.backend.messaging.records import AuditRecord, ExecRecord
from kanade.backend.store.tables import agents, executions, results, rollout_waves, rollouts
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.execstatus import can_transition
from kanade.core.models.schedule import Rollout
from kanade.core.models.wire import Command, decode, encode
from kanade.core.rollout import (
    ResultView,
    WavePlan,
    WaveProgress,
    decide_after_wave,
    exceeds,
    next_due_at,
    settle_after_s,
    split_waves,
    wave_progress,
    wave_request_id,
)

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]

DEFAULT_INTERVAL_S: Final = 0.5
REDISPATCH_AFTER: Final = timedelta(seconds=10)
"""A ``dispatching`` claim older than this is taken over and re-published (idempotent)."""
_PUBLISH_CONCURRENCY: Final = 128
RUNNER_ACTOR: Final = "system:rollout"

ACTIVE: Final = ("running",)


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- creation ---------------------------------------------------------------------------------


def create_rollout(
    conn: Connection,
    *,
    record: ExecRecord,
    command: Command,
    rollout: Rollout,
    groups_of: Mapping[str, Iterable[str]] | None,
    starting_deadline_s: float | None,
    awaiting_approval: bool,
    now: datetime,
) -> list[WavePlan]:
    """Insert the rollout and its waves (insert-if-absent: calling it again for the same
    exec — the scheduler re-publishing an occurrence — changes nothing).

    ``groups_of`` maps pcs to groups for ``group`` waves (None: the agents' last known
    groups). A command with an absolute ``deadline_at`` (a scheduled fire) keeps it as a
    start deadline *relative* to each wave's dispatch, so later waves are not all late."""
    existing = conn.execute(
        select(rollouts.c.rollout_id).where(rollouts.c.rollout_id == record.exec_id)
    ).first()
    if existing is not None:
        return []
    if groups_of is None:
        groups_of = {
            str(pc): list(groups or [])
            for pc, groups in conn.execute(
                select(agents.c.pc_id, agents.c.groups).where(
                    agents.c.pc_id.in_(list(record.expected_pcs))
                )
            )
        }
    if starting_deadline_s is None and command.deadline_at is not None:
        starting_deadline_s = max(0.0, (command.deadline_at - command.issued_at).total_seconds())
    plans = split_waves(rollout.waves, record.expected_pcs, groups_of)
    status = "awaiting_approval" if awaiting_approval else "running"
    conn.execute(
        rollouts.insert().values(
            rollout_id=record.exec_id,
            exec_id=record.exec_id,
            job_id=record.job_id,
            version=record.version,
            status=status,
            halt_on_failure_rate=rollout.halt_on_failure_rate,
            current_wave=0,
            wave_count=len(plans),
            spec=rollout.model_dump(mode="json", exclude_none=True),
            command=encode(command).decode(),
            starting_deadline_s=starting_deadline_s,
            settle_after_s=settle_after_s(command.timeout_s, command.jitter_s),
            created_by=record.initiated_by,
            created_at=now,
            updated_at=now,
        )
    )
    conn.execute(
        rollout_waves.insert(),
        [
            {
                "rollout_id": record.exec_id,
                "idx": p.index,
                "kind": p.kind,
                "label": p.label,
                "pcs": list(p.pcs),
                "delay_s": p.delay_s,
                "state": "waiting",
                "due_at": None
                if awaiting_approval or p.index > 0
                else now + timedelta(seconds=p.delay_s),
                "request_id": wave_request_id(record.exec_id, p.index),
            }
            for p in plans
        ],
    )
    return plans


async def start_for_schedule(
    db: Any, record: ExecRecord, command: Command, rollout: Rollout, *, now: datetime | None = None
) -> None:
    """A scheduled fire of a schedule with ``rollout`` (called by the central scheduler
    instead of publishing the commands; the exec row is already claimed). Idempotent."""
    at = now or utcnow()
    await db.write(
        lambda conn: create_rollout(
            conn,
            record=record,
            command=command,
            rollout=rollout,
            groups_of=None,
            starting_deadline_s=None,
            awaiting_approval=False,
            now=at,
        )
    )


def start_approved(conn: Connection, rollout_id: str, now: datetime) -> bool:
    """``awaiting_approval → running``: the first wave is due its delay after approval."""
    res = conn.execute(
        update(rollouts)
        .where(rollouts.c.rollout_id == rollout_id, rollouts.c.status == "awaiting_approval")
        .values(status="running", updated_at=now)
    )
    if res.rowcount != 1:
        return False
    first = conn.execute(
        select(rollout_waves.c.delay_s).where(
            rollout_waves.c.rollout_id == rollout_id, rollout_waves.c.idx == 0
        )
    ).first()
    if first is not None:
        conn.execute(
            update(rollout_waves)
            .where(rollout_waves.c.rollout_id == rollout_id, rollout_waves.c.idx == 0)
            .values(due_at=now + timedelta(seconds=float(first[0])))
        )
    return True


def reject_pending(conn: Connection, rollout_id: str, reason: str, now: datetime) -> None:
    """An exec whose approval was rejected (or expired): its rollout never starts."""
    res = conn.execute(
        update(rollouts)
        .where(rollouts.c.rollout_id == rollout_id, rollouts.c.status == "awaiting_approval")
        .values(status="rejected", reason=reason, updated_at=now, finished_at=now)
    )
    if res.rowcount:
        conn.execute(
            update(rollout_waves)
            .where(rollout_waves.c.rollout_id == rollout_id, rollout_waves.c.state == "waiting")
            .values(state="cancelled")
        )


# --- reads ------------------------------------------------------------------------------------


def _rows_by_wave(conn: Connection, exec_id: str) -> dict[str, dict[str, ResultView]]:
    """This exec's result rows, by request id then pc."""
    q = select(
        results.c.request_id,
        results.c.pc_id,
        results.c.state,
        results.c.exit_code,
        results.c.skipped,
        results.c.recorded_at,
    ).where(results.c.exec_id == exec_id)
    out: dict[str, dict[str, ResultView]] = {}
    for request_id, pc_id, state, exit_code, skipped, recorded_at in conn.execute(q):
        out.setdefault(str(request_id), {})[str(pc_id)] = ResultView(
            str(state), exit_code, bool(skipped), recorded_at
        )
    return out


def _progress(
    wave: Mapping[str, Any],
    rollout: Mapping[str, Any],
    rows: Mapping[str, ResultView],
    now: datetime,
) -> WaveProgress | None:
    if wave["dispatched_at"] is None:
        return None
    return wave_progress(
        list(wave["pcs"]),
        rows,
        dispatched_at=wave["dispatched_at"],
        settle_after=timedelta(seconds=float(rollout["settle_after_s"])),
        now=now,
    )


_WAVE_VIEW = (
    "idx", "kind", "label", "pcs", "delay_s", "state", "due_at", "request_id", "claimed_at",
    "dispatched_at", "settled_at", "succeeded", "failed", "skipped", "missing", "failure_rate",
    "verdict",
)  # fmt: skip

_ROLLOUT_VIEW = (
    "rollout_id", "exec_id", "job_id", "version", "status", "halt_on_failure_rate",
    "current_wave", "wave_count", "spec", "created_by", "created_at", "updated_at",
    "finished_at", "reason",
)  # fmt: skip


def rollout_view(conn: Connection, row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """A rollout with per-wave progress (live counts for waves sent but not settled)."""
    waves = [
        dict(w)
        for w in conn.execute(
            select(rollout_waves)
            .where(rollout_waves.c.rollout_id == row["rollout_id"])
            .order_by(rollout_waves.c.idx)
        ).mappings()
    ]
    by_wave = _rows_by_wave(conn, str(row["exec_id"]))
    out_waves = []
    for w in waves:
        view = {k: w[k] for k in _WAVE_VIEW}
        view["index"] = view.pop("idx")
        view["size"] = len(w["pcs"])
        progress = _progress(w, row, by_wave.get(str(w["request_id"]), {}), now)
        view["progress"] = None if progress is None else progress.to_dict()
        out_waves.append(view)
    out = {k: row[k] for k in _ROLLOUT_VIEW}
    out["waves"] = out_waves
    out["sent_pcs"] = sum(len(w["pcs"]) for w in waves if w["dispatched_at"] is not None)
    out["total_pcs"] = sum(len(w["pcs"]) for w in waves)
    return out


def get_rollout(conn: Connection, rollout_id: str, now: datetime) -> dict[str, Any] | None:
    row = conn.execute(select(rollouts).where(rollouts.c.rollout_id == rollout_id)).mappings()
    first = row.first()
    return None if first is None else rollout_view(conn, dict(first), now)


def list_rollouts(
    conn: Connection,
    *,
    status: str | None,
    job_id: str | None,
    limit: int,
    offset: int,
    now: datetime,
) -> dict[str, Any]:
    q = select(rollouts)
    if status is not None:
        q = q.where(rollouts.c.status == status)
    if job_id is not None:
        q = q.where(rollouts.c.job_id == job_id)
    total = len(conn.execute(q.with_only_columns(rollouts.c.rollout_id)).all())
    rows = conn.execute(
        q.order_by(rollouts.c.created_at.desc(), rollouts.c.rollout_id).limit(limit).offset(offset)
    ).mappings()
    items = [rollout_view(conn, dict(r), now) for r in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


# --- operator actions -------------------------------------------------------------------------


def set_exec_status(conn: Connection, exec_id: str, new: str, now: datetime) -> bool:
    """Move an exec to ``new`` if the status table allows it from where it is now."""
    current = conn.execute(
        select(executions.c.status).where(executions.c.exec_id == exec_id)
    ).scalar_one_or_none()
    if current is None or current == new or not can_transition(str(current), new):
        return False
    res = conn.execute(
        update(executions)
        .where(executions.c.exec_id == exec_id, executions.c.status == current)
        .values(status=new, updated_at=now)
    )
    return bool(res.rowcount)


def _require(conn: Connection, rollout_id: str) -> Mapping[str, Any]:
    row = conn.execute(select(rollouts).where(rollouts.c.rollout_id == rollout_id)).mappings()
    first = row.first()
    if first is None:
        raise NotFound(f"rollout {rollout_id!r} not found", rollout_id=rollout_id)
    return dict(first)


def resume(conn: Connection, rollout_id: str, now: datetime) -> int:
    """``halted → running``; the next wave is due at once (the operator decided). Returns
    its index."""
    row = _require(conn, rollout_id)
    if row["status"] != "halted":
        raise Conflict(
            f"rollout {rollout_id!r} is {row['status']}; only a halted rollout can be resumed",
            rollout_id=rollout_id,
            status=row["status"],
        )
    res = conn.execute(
        update(rollouts)
        .where(rollouts.c.rollout_id == rollout_id, rollouts.c.status == "halted")
        .values(status="running", reason=None, updated_at=now)
    )
    if res.rowcount != 1:
        raise Conflict(f"rollout {rollout_id!r} changed concurrently; retry")
    idx = int(row["current_wave"])
    conn.execute(
        update(rollout_waves)
        .where(
            rollout_waves.c.rollout_id == rollout_id,
            rollout_waves.c.idx == idx,
            rollout_waves.c.state == "waiting",
        )
        .values(due_at=now)
    )
    return idx


@dataclass(frozen=True)
class Aborted:
    cancelled_waves: list[int]
    in_flight_wave: int | None  # a wave already being sent when the abort landed
    exec_cancelled: bool


def abort(conn: Connection, rollout_id: str, reason: str | None, now: datetime) -> Aborted:
    """``running|halted → aborted``: waves not yet claimed are cancelled and never sent;
    the exec becomes ``cancelled``. Waves already sent keep running (``kanade kill``
    stops them)."""
    row = _require(conn, rollout_id)
    if row["status"] not in ("running", "halted"):
        raise Conflict(
            f"rollout {rollout_id!r} is {row['status']}; only a running or halted rollout "
            "can be aborted",
            rollout_id=rollout_id,
            status=row["status"],
        )
    res = conn.execute(
        update(rollouts)
        .where(rollouts.c.rollout_id == rollout_id, rollouts.c.status == row["status"])
        .values(
            status="aborted",
            reason=reason or "aborted by an operator",
            updated_at=now,
            finished_at=now,
        )
    )
    if res.rowcount != 1:
        raise Conflict(f"rollout {rollout_id!r} changed concurrently; retry")
    waiting = [
        int(i)
        for (i,) in conn.execute(
            select(rollout_waves.c.idx).where(
                rollout_waves.c.rollout_id == rollout_id, rollout_waves.c.state == "waiting"
            )
        )
    ]
    conn.execute(
        update(rollout_waves)
        .where(rollout_waves.c.rollout_id == rollout_id, rollout_waves.c.state == "waiting")
        .values(state="cancelled")
    )
    dispatching = conn.execute(
        select(rollout_waves.c.idx).where(
            rollout_waves.c.rollout_id == rollout_id, rollout_waves.c.state == "dispatching"
        )
    ).scalar_one_or_none()
    cancelled = set_exec_status(conn, str(row["exec_id"]), "cancelled", now)
    return Aborted(sorted(waiting), None if dispatching is None else int(dispatching), cancelled)


# --- publishing -------------------------------------------------------------------------------


async def publish_exact(bus: Bus, raw: bytes, request_id: str, subs: list[str]) -> None:
    """Publish the same bytes to each subject with ``Nats-Msg-Id = <request_id>:<subject>``
    (the exec service's scheme), so a repeat within the duplicate window is dropped."""
    gate = asyncio.Semaphore(_PUBLISH_CONCURRENCY)

    async def one(subject: str) -> None:
        async with gate:
            await bus.publish_js(subject, raw, msg_id=f"{request_id}:{subject}")

    await asyncio.gather(*(one(s) for s in subs))


_STATUS_EVENTS: Final = {"pending": "approved", "rejected": "rejected", "cancelled": "cancelled"}


async def publish_exec_status(
    bus: Bus, exec_id: str, status: str, actor: str, at: datetime
) -> None:
    """An exec status record on KANADE_EXECS (``kanade.exec.<event>.<exec_id>``), which the
    projector applies through the transition table: an operator's decision (approved →
    pending, rejected, cancelled by an abort) survives a rebuild of the database."""
    event = _STATUS_EVENTS[status]
    payload = {"exec_id": exec_id, "status": status, "at": at.isoformat(), "by": actor}
    try:
        await bus.publish_js(
            subjects.exec_subject(event, exec_id),
            json.dumps(payload).encode(),
            msg_id=f"exec-{event}:{exec_id}",
        )
    except Exception as exc:
        log.error("exec status record not written", exec_id=exec_id, status=status, error=str(exc))


async def publish_audit_once(
    bus: Bus, action: str, actor: str, details: dict[str, Any], msg_id: str, at: datetime
) -> None:
    """An audit record with a deterministic msg id (a repeated step is recorded once)."""
    record = AuditRecord(action=action, actor=actor, at=at, details=details)
    try:
        await bus.publish_js(subjects.audit_subject(action), encode(record), msg_id=msg_id)
    except Exception as exc:
        log.error("audit record not written", action=action, error=str(exc))


# --- the runner -------------------------------------------------------------------------------


def _active(conn: Connection) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every running rollout with its current wave."""
    q = (
        select(rollouts, *[c.label(f"w_{c.name}") for c in rollout_waves.c])
        .join(
            rollout_waves,
            and_(
                rollout_waves.c.rollout_id == rollouts.c.rollout_id,
                rollout_waves.c.idx == rollouts.c.current_wave,
            ),
        )
        .where(rollouts.c.status.in_(ACTIVE))
        .order_by(rollouts.c.created_at)
    )
    out = []
    for m in conn.execute(q).mappings():
        r = {k: v for k, v in m.items() if not k.startswith("w_")}
        w = {k[2:]: v for k, v in m.items() if k.startswith("w_")}
        out.append((r, w))
    return out


def _claim(
    conn: Connection,
    rollout_id: str,
    idx: int,
    raw: str,
    now: datetime,
    *,
    takeover_before: datetime | None,
) -> bool:
    """Compare-and-set the wave to ``dispatching`` (or take over a stale claim)."""
    current = (
        select(rollouts.c.rollout_id)
        .where(
            rollouts.c.rollout_id == rollout_id,
            rollouts.c.status == "running",
            rollouts.c.current_wave == idx,
        )
        .exists()
    )
    stmt = update(rollout_waves).where(
        rollout_waves.c.rollout_id == rollout_id, rollout_waves.c.idx == idx, current
    )
    if takeover_before is None:
        stmt = stmt.where(rollout_waves.c.state == "waiting", rollout_waves.c.due_at <= now)
        stmt = stmt.values(state="dispatching", claimed_at=now, command=raw)
    else:
        # The stored bytes are kept: a takeover publishes exactly what may have gone out.
        stmt = stmt.where(
            rollout_waves.c.state == "dispatching", rollout_waves.c.claimed_at <= takeover_before
        ).values(claimed_at=now)
    return bool(conn.execute(stmt).rowcount == 1)


def _mark_dispatched(conn: Connection, rollout_id: str, idx: int, now: datetime) -> bool:
    res = conn.execute(
        update(rollout_waves)
        .where(
            rollout_waves.c.rollout_id == rollout_id,
            rollout_waves.c.idx == idx,
            rollout_waves.c.state == "dispatching",
        )
        .values(state="dispatched", dispatched_at=now)
    )
    return bool(res.rowcount == 1)


def _settle(
    conn: Connection,
    rollout: Mapping[str, Any],
    wave: Mapping[str, Any],
    progress: WaveProgress,
    now: datetime,
) -> str | None:
    """Record the settled wave and move the rollout on; returns the decision."""
    rollout_id = str(rollout["rollout_id"])
    idx = int(wave["idx"])
    threshold = rollout["halt_on_failure_rate"]
    rate = progress.failure_rate
    assert progress.settled_at is not None
    res = conn.execute(
        update(rollout_waves)
        .where(
            rollout_waves.c.rollout_id == rollout_id,
            rollout_waves.c.idx == idx,
            rollout_waves.c.state == "dispatched",
        )
        .values(
            state="settled",
            settled_at=progress.settled_at,
            succeeded=progress.succeeded,
            failed=progress.failed,
            skipped=progress.skipped,
            missing=progress.missing,
            failure_rate=rate,
            verdict="exceeded" if exceeds(rate, threshold) else "ok",
        )
    )
    if res.rowcount != 1:
        return None
    decision = decide_after_wave(idx, int(rollout["wave_count"]), rate, threshold)
    guard = and_(
        rollouts.c.rollout_id == rollout_id,
        rollouts.c.status == "running",
        rollouts.c.current_wave == idx,
    )
    if decision == "complete":
        conn.execute(
            update(rollouts)
            .where(guard)
            .values(status="completed", updated_at=now, finished_at=now)
        )
        return decision
    values: dict[str, Any] = {"current_wave": idx + 1, "updated_at": now}
    if decision == "halt":
        values |= {
            "status": "halted",
            "reason": (
                f"wave {idx} ({wave['label']}): failure rate {rate:.0%} "
                f"({progress.failed} failed, {progress.missing} missing of {progress.size}) "
                f"exceeds halt_on_failure_rate {threshold:g}"
            ),
        }
    if conn.execute(update(rollouts).where(guard).values(**values)).rowcount != 1:
        return None
    if decision == "next":
        delay = conn.execute(
            select(rollout_waves.c.delay_s).where(
                rollout_waves.c.rollout_id == rollout_id, rollout_waves.c.idx == idx + 1
            )
        ).scalar_one()
        conn.execute(
            update(rollout_waves)
            .where(rollout_waves.c.rollout_id == rollout_id, rollout_waves.c.idx == idx + 1)
            .values(due_at=next_due_at(progress.settled_at, float(delay)))
        )
    return decision


class RolloutRunner:
    """Drives every running rollout's current wave; all state is in the database."""

    def __init__(
        self,
        db: Any,
        bus: Callable[[], Bus],
        *,
        clock: Clock = utcnow,
        interval_s: float = DEFAULT_INTERVAL_S,
        redispatch_after: timedelta = REDISPATCH_AFTER,
    ) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        self._interval = interval_s
        self._redispatch_after = redispatch_after
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                moved = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("rollout tick failed; retrying", error=str(exc))
                moved = False
            if moved:
                hub.publish("rollouts")  # dashboard: a wave went out or settled
                continue  # a wave settled or went out: the next step may be due now
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)

    async def tick(self) -> bool:
        """One pass over every running rollout; True when anything moved."""
        active = await self._db.read(_active)
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
        if state == "waiting":
            due = wave["due_at"]
            if due is None or due > now:
                return False
            return await self._dispatch(rollout, wave, now, takeover=False)
        if state == "dispatching":
            if wave["claimed_at"] is not None and wave["claimed_at"] > now - self._redispatch_after:
                return False  # someone is sending it right now
            return await self._dispatch(rollout, wave, now, takeover=True)
        if state == "dispatched":
            return await self._maybe_settle(rollout, wave, now)
        return False

    def _wave_command(
        self, rollout: Mapping[str, Any], wave: Mapping[str, Any], now: datetime
    ) -> str:
        template = decode(Command, str(rollout["command"]).encode())
        deadline_s = rollout["starting_deadline_s"]
        cmd = template.model_copy(
            update={
                "request_id": str(wave["request_id"]),
                "issued_at": now,
                "deadline_at": None if deadline_s is None else now + timedelta(seconds=deadline_s),
            }
        )
        return encode(cmd).decode()

    async def _dispatch(
        self, rollout: dict[str, Any], wave: dict[str, Any], now: datetime, *, takeover: bool
    ) -> bool:
        rollout_id, idx = str(rollout["rollout_id"]), int(wave["idx"])
        bus = self._bus()  # raises while the broker is away: nothing claimed then
        raw = self._wave_command(rollout, wave, now)
        before = now - self._redispatch_after if takeover else None
        won = await self._db.write(
            lambda conn: _claim(conn, rollout_id, idx, raw, now, takeover_before=before)
        )
        if not won:
            return False
        if takeover:
            raw = await self._db.read(
                lambda conn: conn.execute(
                    select(rollout_waves.c.command).where(
                        rollout_waves.c.rollout_id == rollout_id, rollout_waves.c.idx == idx
                    )
                ).scalar_one()
            )
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
        await self._db.write(lambda conn: _mark_dispatched(conn, rollout_id, idx, sent_at))
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
            f"audit:rollout_wave:{wave['request_id']}",
            sent_at,
        )
        return True

    async def _maybe_settle(
        self, rollout: dict[str, Any], wave: dict[str, Any], now: datetime
    ) -> bool:
        exec_id = str(rollout["exec_id"])
        request_id = str(wave["request_id"])

        def work(conn: Connection) -> tuple[str | None, WaveProgress | None]:
            rows = _rows_by_wave(conn, exec_id).get(request_id, {})
            progress = _progress(wave, rollout, rows, now)
            if progress is None or not progress.settled:
                return None, progress
            return _settle(conn, rollout, wave, progress, now), progress

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
                    f"audit:rollout_{decision}:{request_id}",
                    now,
                )
        return True

    def _bus_or_none(self) -> Bus | None:
        try:
            return self._bus()
        except Exception:
            return None
