"""Withdrawing fires prepared ahead, on a real SQLite file: the claim and its ``fired``
decision go, the schedule's counters and last fire are put back; a row anything happened
to stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update

from kanade.backend.store import scheduling as store
from kanade.backend.store.scheduling import DecisionRow
from kanade.backend.store.tables import executions, schedule_decisions
from kanade.core.scheduling import exec_id_for, occurrence_id, request_id_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def exec_row(schedule_id: str, nominal: datetime) -> dict[str, Any]:
    occ = occurrence_id(schedule_id, nominal)
    return {
        "exec_id": exec_id_for(occ),
        "kind": "job",
        "job_id": "hello",
        "version": "1",
        "target": {"all": True, "groups": [], "pcs": []},
        "expected_pcs": ["pc-1"],
        "expected_count": 1,
        "status": "pending",
        "initiated_by": f"schedule:{schedule_id}",
        "schedule_id": schedule_id,
        "nominal_time": nominal,
        "created_at": nominal,
        "request_id": request_id_for(occ),
        "inventory_hint": None,
        "check_hint": None,
    }


def fired(row: dict[str, Any]) -> DecisionRow:
    nominal = row["nominal_time"]
    return DecisionRow(
        row["schedule_id"],
        occurrence_id(row["schedule_id"], nominal),
        nominal,
        "fired",
        None,
        "dispatched to 1 pc(s)",
        exec_id=row["exec_id"],
        pcs=1,
        decided_at=nominal,
    )


def claim(engine: Engine, *rows: dict[str, Any]) -> None:
    with engine.begin() as conn:
        store.claim_executions(conn, list(rows), T0)
        store.record_decisions(conn, [fired(r) for r in rows], T0)


def test_a_withdrawn_claim_takes_its_decision_and_counts_back(engine: Engine) -> None:
    earlier, prepared = exec_row("nightly", T0), exec_row("nightly", T0 + MIN)
    claim(engine, earlier)
    claim(engine, prepared)
    with engine.begin() as conn:
        stats = store.stats(conn)["nightly"]
    assert stats["fired"] == 2 and stats["last_exec_id"] == prepared["exec_id"]
    assert stats["last_fire_at"] == T0 + MIN  # decided_at: the nominal time
    with engine.begin() as conn:
        released = store.release_executions(conn, [prepared["exec_id"]], T0 + MIN)
        ids = {r[0] for r in conn.execute(select(executions.c.exec_id))}
        decisions = [
            r[0] for r in conn.execute(select(schedule_decisions.c.exec_id).order_by("id"))
        ]
        stats = store.stats(conn)["nightly"]
    assert released == {prepared["exec_id"]}
    assert ids == {earlier["exec_id"]}
    assert decisions == [earlier["exec_id"]]
    assert stats["fired"] == 1
    assert (stats["last_exec_id"], stats["last_nominal"], stats["last_fire_at"]) == (
        earlier["exec_id"],
        T0,
        T0,
    )


def test_the_first_fire_withdrawn_leaves_no_last_fire(engine: Engine) -> None:
    only = exec_row("once", T0)
    claim(engine, only)
    with engine.begin() as conn:
        assert store.release_executions(conn, [only["exec_id"]], T0) == {only["exec_id"]}
        stats = store.stats(conn)["once"]
    assert stats["fired"] == 0
    assert stats["last_exec_id"] is None and stats["last_fire_at"] is None


def test_a_row_something_happened_to_is_not_released(engine: Engine) -> None:
    cancelled, started, untouched = (exec_row("s", T0 + i * MIN) for i in range(3))
    claim(engine, cancelled, started, untouched)
    with engine.begin() as conn:
        conn.execute(
            update(executions)
            .where(executions.c.exec_id == cancelled["exec_id"])
            .values(status="cancelled")
        )
        conn.execute(
            update(executions)
            .where(executions.c.exec_id == started["exec_id"])
            .values(started_count=1)
        )
        released = store.release_executions(
            conn, [r["exec_id"] for r in (cancelled, started, untouched)] + ["unknown"], T0
        )
        ids = {r[0] for r in conn.execute(select(executions.c.exec_id))}
        stats = store.stats(conn)["s"]
    assert released == {untouched["exec_id"]}
    assert ids == {cancelled["exec_id"], started["exec_id"]}
    assert stats["fired"] == 2
    # The last fire pointed at the released one: it falls back to the newest left.
    assert stats["last_exec_id"] == started["exec_id"]
