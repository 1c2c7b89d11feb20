"""The rollout tables (``rollouts``, ``rollout_waves``; SPEC §4.7): creation, the approval
hand-over, operator moves (resume, abort), reads, and the runner's claim → mark → settle
compare-and-sets. Why dispatch is claim → publish → mark: :mod:`kanade.backend.workers.rollouts`.
Every change is noted for the rollout's document in KV ``kanade_state``
(:mod:`kanade.backend.store.state_outbox`): a wiped database gets the rollout back, waves and
all, and it continues where it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from kanade.backend.store.database import Database
from kanade.backend.store.state_outbox import touch
from kanade.backend.store.tables import agents, results, rollout_waves, rollouts
from kanade.core.dispatch import command_deadline
from kanade.core.models.records import ExecRecord
from kanade.core.models.waves import Rollout
from kanade.core.models.wire import Command, WireDecodeError, decode, encode
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
from kanade.core.statuses import WAVE_TRANSITIONS, RolloutStatus, WaveState, sources

ACTIVE: Final = (RolloutStatus.RUNNING,)


def _wave_may_become(state: WaveState) -> ColumnElement[bool]:
    """``WHERE`` a wave's state is one the transition table lets move to ``state``."""
    return rollout_waves.c.state.in_(sources(WAVE_TRANSITIONS, state))


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
    status = RolloutStatus.AWAITING_APPROVAL if awaiting_approval else RolloutStatus.RUNNING
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
                "state": WaveState.WAITING,
                "due_at": None
                if awaiting_approval or p.index > 0
                else now + timedelta(seconds=p.delay_s),
                "request_id": wave_request_id(record.exec_id, p.index),
            }
            for p in plans
        ],
    )
    touch(conn, "rollout", record.exec_id)
    return plans


async def start_for_schedule(
    db: Database,
    record: ExecRecord,
    command: Command,
    rollout: Rollout,
    *,
    now: datetime,
) -> None:
    """A scheduled fire of a schedule with ``rollout`` (called by the central scheduler
    instead of publishing the commands; the exec row is already claimed). Idempotent."""
    at = now
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
        .where(
            rollouts.c.rollout_id == rollout_id,
            rollouts.c.status == RolloutStatus.AWAITING_APPROVAL,
        )
        .values(status=RolloutStatus.RUNNING, updated_at=now)
    )
    if res.rowcount != 1:
        return False
    touch(conn, "rollout", rollout_id)
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
        .where(
            rollouts.c.rollout_id == rollout_id,
            rollouts.c.status == RolloutStatus.AWAITING_APPROVAL,
        )
        .values(status=RolloutStatus.REJECTED, reason=reason, updated_at=now, finished_at=now)
    )
    if res.rowcount:
        touch(conn, "rollout", rollout_id)
        conn.execute(
            update(rollout_waves)
            .where(rollout_waves.c.rollout_id == rollout_id, _wave_may_become(WaveState.CANCELLED))
            .values(state=WaveState.CANCELLED)
        )


# --- reads ------------------------------------------------------------------------------------


def rows_by_wave(conn: Connection, exec_id: str) -> dict[str, dict[str, ResultView]]:
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


def progress_of(
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


def get_row(conn: Connection, rollout_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(rollouts).where(rollouts.c.rollout_id == rollout_id)).mappings()
    first = row.first()
    return None if first is None else dict(first)


def waves_of(conn: Connection, rollout_id: str) -> list[dict[str, Any]]:
    """The rollout's waves in order."""
    return [
        dict(w)
        for w in conn.execute(
            select(rollout_waves)
            .where(rollout_waves.c.rollout_id == rollout_id)
            .order_by(rollout_waves.c.idx)
        ).mappings()
    ]


def list_rows(
    conn: Connection, *, status: str | None, job_id: str | None, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    """One page of rollout rows, newest first, and how many match in all."""
    q = select(rollouts)
    if status is not None:
        q = q.where(rollouts.c.status == status)
    if job_id is not None:
        q = q.where(rollouts.c.job_id == job_id)
    total = len(conn.execute(q.with_only_columns(rollouts.c.rollout_id)).all())
    rows = conn.execute(
        q.order_by(rollouts.c.created_at.desc(), rollouts.c.rollout_id).limit(limit).offset(offset)
    ).mappings()
    return total, [dict(r) for r in rows]


# --- operator actions -------------------------------------------------------------------------


def resume_halted(conn: Connection, rollout_id: str, idx: int, now: datetime) -> bool:
    """Compare-and-set ``halted → running``; wave ``idx`` (the current one) is due at once.
    False when the rollout was not halted any more."""
    res = conn.execute(
        update(rollouts)
        .where(rollouts.c.rollout_id == rollout_id, rollouts.c.status == RolloutStatus.HALTED)
        .values(status=RolloutStatus.RUNNING, reason=None, updated_at=now)
    )
    if res.rowcount != 1:
        return False
    touch(conn, "rollout", rollout_id)
    conn.execute(
        update(rollout_waves)
        .where(
            rollout_waves.c.rollout_id == rollout_id,
            rollout_waves.c.idx == idx,
            rollout_waves.c.state == WaveState.WAITING,
        )
        .values(due_at=now)
    )
    return True


def abort_from(
    conn: Connection, rollout_id: str, status: str, reason: str, now: datetime
) -> tuple[list[int], int | None] | None:
    """Compare-and-set ``status → aborted`` and cancel the waves not yet claimed. Returns
    (cancelled wave indexes, the wave being sent right now or None); None when the rollout
    was no longer ``status``."""
    res = conn.execute(
        update(rollouts)
        .where(rollouts.c.rollout_id == rollout_id, rollouts.c.status == status)
        .values(status=RolloutStatus.ABORTED, reason=reason, updated_at=now, finished_at=now)
    )
    if res.rowcount != 1:
        return None
    touch(conn, "rollout", rollout_id)
    waiting = [
        int(i)
        for (i,) in conn.execute(
            select(rollout_waves.c.idx).where(
                rollout_waves.c.rollout_id == rollout_id, rollout_waves.c.state == WaveState.WAITING
            )
        )
    ]
    conn.execute(
        update(rollout_waves)
        .where(rollout_waves.c.rollout_id == rollout_id, _wave_may_become(WaveState.CANCELLED))
        .values(state=WaveState.CANCELLED)
    )
    dispatching = conn.execute(
        select(rollout_waves.c.idx).where(
            rollout_waves.c.rollout_id == rollout_id,
            rollout_waves.c.state == WaveState.DISPATCHING,
        )
    ).scalar_one_or_none()
    return sorted(waiting), None if dispatching is None else int(dispatching)


# --- the runner's steps -----------------------------------------------------------------------


def active(conn: Connection) -> list[tuple[dict[str, Any], dict[str, Any]]]:
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


def claim(
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
            rollouts.c.status == RolloutStatus.RUNNING,
            rollouts.c.current_wave == idx,
        )
        .exists()
    )
    stmt = update(rollout_waves).where(
        rollout_waves.c.rollout_id == rollout_id, rollout_waves.c.idx == idx, current
    )
    if takeover_before is None:
        stmt = stmt.where(_wave_may_become(WaveState.DISPATCHING), rollout_waves.c.due_at <= now)
        stmt = stmt.values(state=WaveState.DISPATCHING, claimed_at=now, command=raw)
    else:
        # The stored bytes are kept: a takeover publishes exactly what may have gone out.
        stmt = stmt.where(
            rollout_waves.c.state == WaveState.DISPATCHING,
            rollout_waves.c.claimed_at <= takeover_before,
        ).values(claimed_at=now)
    if conn.execute(stmt).rowcount != 1:
        return False
    touch(conn, "rollout", rollout_id)
    return True


def stored_command(conn: Connection, rollout_id: str, idx: int) -> str:
    """The exact command bytes a claim stored for wave ``idx``."""
    return str(
        conn.execute(
            select(rollout_waves.c.command).where(
                rollout_waves.c.rollout_id == rollout_id, rollout_waves.c.idx == idx
            )
        ).scalar_one()
    )


def mark_dispatched(conn: Connection, rollout_id: str, idx: int, now: datetime) -> bool:
    res = conn.execute(
        update(rollout_waves)
        .where(
            rollout_waves.c.rollout_id == rollout_id,
            rollout_waves.c.idx == idx,
            _wave_may_become(WaveState.DISPATCHED),
        )
        .values(state=WaveState.DISPATCHED, dispatched_at=now)
    )
    if res.rowcount != 1:
        return False
    touch(conn, "rollout", rollout_id)
    return True


def settle(
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
            _wave_may_become(WaveState.SETTLED),
        )
        .values(
            state=WaveState.SETTLED,
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
    touch(conn, "rollout", rollout_id)
    decision = decide_after_wave(idx, int(rollout["wave_count"]), rate, threshold)
    guard = and_(
        rollouts.c.rollout_id == rollout_id,
        rollouts.c.status == RolloutStatus.RUNNING,
        rollouts.c.current_wave == idx,
    )
    if decision == "complete":
        conn.execute(
            update(rollouts)
            .where(guard)
            .values(status=RolloutStatus.COMPLETED, updated_at=now, finished_at=now)
        )
        return decision
    values: dict[str, Any] = {"current_wave": idx + 1, "updated_at": now}
    if decision == "halt":
        values |= {
            "status": RolloutStatus.HALTED,
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


def wave_deadlines(conn: Connection, exec_ids: Iterable[str]) -> dict[str, datetime]:
    """The deadline each rollout exec's sent waves give it (SPEC §4.3: the latest command's):
    the runner sets it when a wave goes out, but no stream carries it, so an exec row
    rebuilt after a wipe takes it from the restored waves' stored command bytes."""
    wanted = sorted(set(exec_ids))
    out: dict[str, datetime] = {}
    if not wanted:
        return out
    q = (
        select(rollouts.c.exec_id, rollout_waves.c.command)
        .join(rollout_waves, rollout_waves.c.rollout_id == rollouts.c.rollout_id)
        .where(
            rollouts.c.exec_id.in_(wanted),
            rollout_waves.c.dispatched_at.is_not(None),
            rollout_waves.c.command.is_not(None),
        )
    )
    for exec_id, raw in conn.execute(q):
        try:
            deadline = command_deadline(decode(Command, str(raw).encode()))
        except WireDecodeError:
            continue  # a stored command that no longer reads: the fallback deadline holds
        key = str(exec_id)
        if key not in out or deadline > out[key]:
            out[key] = deadline
    return out
