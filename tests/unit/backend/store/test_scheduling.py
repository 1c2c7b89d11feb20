"""The central scheduler's SQL side on a real SQLite file: occurrence claims (the DB layer
of "never fire one occurrence twice"), the decision log and counters, reconcile facts,
in-flight counts; and withdrawing fires prepared ahead (the claim and its ``fired``
decision go, the schedule's counters and last fire are put back; a row anything happened
to stays)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select, update
from store_rows import row as result_row

from kanade.backend.store import executions as exec_store
from kanade.backend.store import results, retention
from kanade.backend.store import scheduling as store
from kanade.backend.store.scheduling import DecisionRow
from kanade.backend.store.tables import executions, schedule_decisions
from kanade.core.scheduling import exec_id_for, occurrence_id, request_id_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def exec_row(schedule_id: str, nominal: datetime, **over: Any) -> dict[str, Any]:
    occ = occurrence_id(schedule_id, nominal)
    row: dict[str, Any] = {
        "exec_id": exec_id_for(occ),
        "kind": "job",
        "job_id": "hello",
        "version": "1",
        "target": {"all": True, "groups": [], "pcs": []},
        "expected_pcs": ["pc-1", "pc-2"],
        "expected_count": 2,
        "status": "pending",
        "initiated_by": f"schedule:{schedule_id}",
        "schedule_id": schedule_id,
        "nominal_time": nominal,
        "created_at": T0,
        "request_id": request_id_for(occ),
        "inventory_hint": None,
        "check_hint": None,
    }
    row.update(over)
    return row


def test_an_occurrence_is_claimed_once(engine: Engine) -> None:
    rows = [exec_row("nightly", T0), exec_row("nightly", T0 + timedelta(days=1))]
    with engine.begin() as conn:
        first = store.claim_executions(conn, rows, T0)
    assert first == {r["exec_id"] for r in rows}
    # The same occurrences again (a restart, a second backend, a clock step) plus a new one.
    again = [*rows, exec_row("nightly", T0 + timedelta(days=2))]
    with engine.begin() as conn:
        second = store.claim_executions(conn, again, T0 + timedelta(seconds=1))
        count = conn.execute(select(func.count()).select_from(executions)).scalar_one()
        existing = store.existing_executions(conn, first)
    assert second == {again[2]["exec_id"]}
    assert count == 3
    assert set(existing) == first
    assert existing[rows[0]["exec_id"]]["initiated_by"] == "schedule:nightly"
    assert existing[rows[0]["exec_id"]]["nominal_time"] == T0


def test_claims_scale_past_one_statement(engine: Engine) -> None:
    rows = [exec_row("every-sec", T0 + timedelta(seconds=i)) for i in range(450)]
    with engine.begin() as conn:
        assert len(store.claim_executions(conn, rows, T0)) == 450
        assert store.claim_executions(conn, rows, T0) == set()


def test_decisions_are_logged_and_counted(engine: Engine) -> None:
    occ = occurrence_id("nightly", T0)
    rows = [
        DecisionRow("nightly", occ, T0, "fired", None, "ok", exec_id="e1", pcs=3, lateness_s=0.01),
        DecisionRow("nightly", occ, T0, "skipped", "frozen", "fleet freeze"),
        DecisionRow("nightly", occ, T0, "missed", "catchup_skip", "3 missed", count=3),
        DecisionRow("nightly", occ, T0, "duplicate", "already_fired", "dup", exec_id="e1"),
        DecisionRow("other", occurrence_id("other", T0), T0, "skipped", "outside_window", "w"),
    ]
    with engine.begin() as conn:
        store.record_decisions(conn, rows, T0)
        store.record_decisions(conn, rows[:1], T0 + timedelta(minutes=1))
        stats = store.stats(conn)
        recent = store.recent_decisions(conn, "nightly", limit=3)
    assert stats["nightly"]["fired"] == 2
    assert stats["nightly"]["skipped"] == 1
    assert stats["nightly"]["missed"] == 3  # a missed row stands for several occurrences
    assert stats["nightly"]["last_exec_id"] == "e1"
    assert stats["nightly"]["last_fire_at"] == T0 + timedelta(minutes=1)
    assert stats["other"] == {**stats["other"], "fired": 0, "skipped": 1, "missed": 0}
    assert [r["result"] for r in recent] == ["fired", "duplicate", "missed"]  # newest first


def test_decisions_are_pruned_per_schedule_by_retention(engine: Engine) -> None:
    rows = [
        DecisionRow("s", occurrence_id("s", T0 + timedelta(seconds=i)), T0, "skipped", "frozen")
        for i in range(30)
    ]
    with engine.begin() as conn:
        store.record_decisions(conn, rows, T0)
        store.record_decisions(conn, rows[:5], T0)  # of another... same schedule, 35 total
        pruned = retention.prune_log_by_count(conn, "schedule_decisions", keep=10, limit=100)
        assert pruned.rows == 25
        left = conn.execute(select(func.count()).select_from(schedule_decisions)).scalar_one()
        assert store.stats(conn)["s"]["skipped"] == 35  # counters are not pruned
    assert left == 10


def _result(result_id: str, exec_id: str, pc: str, schedule_id: str | None, **over: Any) -> dict:
    """A finished result row of ``schedule_id``'s exec (empty output, a 30 s timeout)."""
    fields: dict[str, Any] = {"request_id": "r", "stdout": "", "stdout_bytes": 0}
    fields.update(schedule_id=schedule_id, timeout_s=30.0, **over)
    return result_row(result_id, exec_id, pc, state="finished", at=T0, **fields)


def test_reconcile_facts_and_in_flight(engine: Engine) -> None:
    e1 = exec_row("patch", T0)
    e2 = exec_row("patch", T0 + timedelta(minutes=1), expected_pcs=["pc-3"], expected_count=1)
    t = T0 + timedelta(minutes=5)
    with engine.begin() as conn:
        store.claim_executions(conn, [e1, e2], T0)
        results.upsert_finished(
            conn,
            [
                _result("a", e1["exec_id"], "pc-1", "patch", recorded_at=T0),
                _result("b", e1["exec_id"], "pc-1", "patch", recorded_at=t, exit_code=1),
                _result("c", e1["exec_id"], "pc-2", "patch", recorded_at=t, skipped=True),
                _result("d", "x", "pc-9", "other", recorded_at=t),
            ],
        )
        exec_store.refresh_exec_counters(conn, [e1["exec_id"]], t)
        facts = store.reconcile_facts(conn, ["patch", "nothing"])
        in_flight = store.in_flight_by_job(conn, ["hello", "idle"])
        running = store.in_flight_execs_of_schedule(conn, "patch")
    f = facts["patch"]
    assert f.last_success == {"pc-1": T0}  # a failure and a skip never count as success
    assert f.last_result == {"pc-1": t, "pc-2": t}
    assert facts["nothing"].last_success == {}
    # e1 finished 3 rows of 2 expected (completed: 0 in flight); e2 expects 1, none finished.
    assert in_flight == {"hello": 1, "idle": 0}
    assert running == [e2["exec_id"]]


# --- withdrawing fires prepared ahead ----------------------------------------------------
def prepared_row(schedule_id: str, nominal: datetime) -> dict[str, Any]:
    """The exec row of a fire prepared ahead: created at its nominal time, one pc."""
    return exec_row(
        schedule_id, nominal, created_at=nominal, expected_pcs=["pc-1"], expected_count=1
    )


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
    earlier, prepared = prepared_row("nightly", T0), prepared_row("nightly", T0 + MIN)
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
    only = prepared_row("once", T0)
    claim(engine, only)
    with engine.begin() as conn:
        assert store.release_executions(conn, [only["exec_id"]], T0) == {only["exec_id"]}
        stats = store.stats(conn)["once"]
    assert stats["fired"] == 0
    assert stats["last_exec_id"] is None and stats["last_fire_at"] is None


def test_a_row_something_happened_to_is_not_released(engine: Engine) -> None:
    cancelled, started, untouched = (prepared_row("s", T0 + i * MIN) for i in range(3))
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
