"""The rollout tables' compare-and-sets (kanade.backend.store.rollouts), on a real SQLite file:
a wave is claimed once, taken over only when its claim is stale, settled once; operator moves
succeed once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from store_rows import job_command

from kanade.backend.store import rollouts as store
from kanade.core.models.records import ExecRecord
from kanade.core.models.waves import Rollout
from kanade.core.rollout import ResultView, wave_progress

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PCS = ["pc-0", "pc-1", "pc-2", "pc-3"]


def _create(engine: Engine, rid: str = "r1") -> int:
    record = ExecRecord(
        exec_id=rid,
        kind="job",
        job_id="j",
        version="1",
        target={"all": True},
        expected_pcs=PCS,
        expected_count=len(PCS),
        created_at=T0,
        request_id="q",
    )
    command = job_command(rid, T0)
    rollout = Rollout.model_validate(
        {"waves": [{"percent": 50}, {"percent": 100}], "halt_on_failure_rate": 0.2}
    )
    with engine.begin() as conn:
        plans = store.create_rollout(
            conn,
            record=record,
            command=command,
            rollout=rollout,
            groups_of={},
            starting_deadline_s=None,
            awaiting_approval=False,
            now=T0,
        )
    return len(plans)


def test_creation_is_insert_if_absent(engine: Engine) -> None:
    assert _create(engine) == 2
    assert _create(engine) == 0  # a re-published occurrence changes nothing
    with engine.begin() as conn:
        waves = store.waves_of(conn, "r1")
    assert [w["state"] for w in waves] == ["waiting", "waiting"]
    assert waves[0]["due_at"] is not None and waves[1]["due_at"] is None


def test_a_wave_is_claimed_once_and_taken_over_only_when_stale(engine: Engine) -> None:
    _create(engine)
    with engine.begin() as conn:
        assert store.claim(conn, "r1", 0, "bytes-1", T0, takeover_before=None)
        assert not store.claim(conn, "r1", 0, "bytes-2", T0, takeover_before=None)
        # A claim younger than the takeover horizon is left alone…
        assert not store.claim(
            conn, "r1", 0, "bytes-3", T0, takeover_before=T0 - timedelta(seconds=1)
        )
        # …an old one is taken over, and the bytes first stored are kept.
        later = T0 + timedelta(seconds=30)
        assert store.claim(conn, "r1", 0, "bytes-4", later, takeover_before=T0)
        assert store.stored_command(conn, "r1", 0) == "bytes-1"
        assert store.mark_dispatched(conn, "r1", 0, later)
        assert not store.mark_dispatched(conn, "r1", 0, later)


def test_a_failing_wave_halts_once_then_resume_and_abort_move_once(engine: Engine) -> None:
    _create(engine)
    with engine.begin() as conn:
        store.claim(conn, "r1", 0, "b", T0, takeover_before=None)
        store.mark_dispatched(conn, "r1", 0, T0)
        ((rollout, wave),) = store.active(conn)
        rows = {
            pc: ResultView("finished", 1 if pc == "pc-0" else 0, False, T0) for pc in wave["pcs"]
        }
        progress = wave_progress(
            list(wave["pcs"]), rows, dispatched_at=T0, settle_after=timedelta(60), now=T0
        )
        assert store.settle(conn, rollout, wave, progress, T0) == "halt"
        assert store.settle(conn, rollout, wave, progress, T0) is None  # settled already
        row = store.get_row(conn, "r1")
        assert row is not None and row["status"] == "halted" and row["current_wave"] == 1
        assert store.resume_halted(conn, "r1", 1, T0)
        assert not store.resume_halted(conn, "r1", 1, T0)
        assert store.abort_from(conn, "r1", "running", "stop", T0) == ([1], None)
        assert store.abort_from(conn, "r1", "running", "stop", T0) is None
        assert store.active(conn) == []
