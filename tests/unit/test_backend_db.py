"""The projection schema and its UPSERT semantics, on a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, select, text

from kanade.backend.store import reads, writes
from kanade.backend.store.database import create_engine, database_url, sync_url
from kanade.backend.store.migrate import upgrade_sync
from kanade.backend.store.tables import executions, metadata, results

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = database_url(str(tmp_path / "sub" / "kanade.db"))
    upgrade_sync(url)
    eng = create_engine(url)
    try:
        yield eng
    finally:
        eng.dispose()


def test_db_arg_is_a_path_or_a_url(tmp_path: Path) -> None:
    assert database_url(str(tmp_path / "x.db")) == f"sqlite+aiosqlite:///{tmp_path}/x.db"
    assert database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert sync_url("sqlite+aiosqlite:////a/b.db") == "sqlite+pysqlite:////a/b.db"


def test_migrations_match_the_tables_and_are_idempotent(engine: Engine) -> None:
    upgrade_sync(str(engine.url))  # a second run is a no-op
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 1  # NORMAL
        assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1


def exec_row(exec_id: str, expected: list[str]) -> dict[str, Any]:
    return {
        "exec_id": exec_id,
        "kind": "job",
        "job_id": "hello",
        "version": "1",
        "target": {"all": False, "groups": [], "pcs": expected},
        "expected_pcs": expected,
        "expected_count": len(expected),
        "status": "pending",
        "initiated_by": "anonymous",
        "schedule_id": None,
        "nominal_time": None,
        "created_at": T0,
        "request_id": "req-" + exec_id,
    }


def row(
    result_id: str, exec_id: str, pc: str, *, state: str, at: datetime, **kw: Any
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "result_id": result_id,
        "exec_id": exec_id,
        "request_id": "req-" + exec_id,
        "pc_id": pc,
        "job_id": "hello",
        "version": "1",
        "state": state,
        "exit_code": None,
        "skipped": False,
        "stdout": "",
        "stderr": "",
        "stdout_bytes": 0,
        "stderr_bytes": 0,
        "stdout_ref": None,
        "stderr_ref": None,
        "started_at": T0,
        "finished_at": None,
        "attempts": 1,
        "note": None,
        "schedule_id": None,
        "nominal_time": None,
        "recorded_at": at,
        "timeout_s": None,
    }
    if state == "finished":
        base.update(exit_code=0, finished_at=at, stdout="hi\n", stdout_bytes=3)
    base.update(kw)
    return base


def get(engine: Engine, result_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        found = reads.get_result(conn, result_id)
    assert found is not None
    return found


def test_started_then_result_completes_the_row(engine: Engine) -> None:
    with engine.begin() as conn:
        writes.insert_started(
            conn, [row("r1", "e1", "pc1", state="in_flight", at=T0, timeout_s=30.0)]
        )
    assert get(engine, "r1")["state"] == "in_flight"
    later = T0 + timedelta(seconds=5)
    with engine.begin() as conn:
        writes.upsert_finished(conn, [row("r1", "e1", "pc1", state="finished", at=later)])
    got = get(engine, "r1")
    assert (got["state"], got["exit_code"], got["stdout"]) == ("finished", 0, "hi\n")
    assert got["recorded_at"] == later
    assert got["timeout_s"] == 30.0  # kept from the EventStarted


def test_started_after_result_changes_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        writes.upsert_finished(conn, [row("r1", "e1", "pc1", state="finished", at=T0)])
    before = get(engine, "r1")
    with engine.begin() as conn:
        writes.insert_started(
            conn, [row("r1", "e1", "pc1", state="in_flight", at=T0 + timedelta(hours=1))]
        )
    assert get(engine, "r1") == before


def test_first_finished_result_wins_but_a_reaped_row_is_overwritten(engine: Engine) -> None:
    first = row("r1", "e1", "pc1", state="finished", at=T0)
    dup = row("r1", "e1", "pc1", state="finished", at=T0 + timedelta(minutes=1), stdout="other")
    with engine.begin() as conn:
        writes.upsert_finished(conn, [first, dup])  # same batch
        writes.upsert_finished(conn, [dup])  # and a later one
    assert get(engine, "r1")["recorded_at"] == T0

    reaped = row("r2", "e1", "pc2", state="reaped", at=T0, exit_code=-1)
    with engine.begin() as conn:
        writes.insert_started(conn, [reaped])
        writes.upsert_finished(conn, [row("r2", "e1", "pc2", state="finished", at=T0)])
    assert get(engine, "r2")["state"] == "finished"


def test_counters_are_recomputed_and_status_advances(engine: Engine) -> None:
    with engine.begin() as conn:
        writes.upsert_executions(conn, [exec_row("e1", ["pc1", "pc2", "pc3"])], T0)
        writes.insert_started(conn, [row("r1", "e1", "pc1", state="in_flight", at=T0)])
        writes.refresh_exec_counters(conn, ["e1"], T0)

    def exec_state() -> tuple[Any, ...]:
        with engine.connect() as conn:
            got = reads.get_execution(conn, "e1")
        assert got is not None
        return tuple(
            got[k]
            for k in ("status", "started_count", "finished_count", "failed_count", "skipped_count")
        )

    assert exec_state() == ("running", 1, 0, 0, 0)
    finished = [
        row("r1", "e1", "pc1", state="finished", at=T0),
        row("r2", "e1", "pc2", state="finished", at=T0, exit_code=3),
        row("r3", "e1", "pc3", state="finished", at=T0, exit_code=122, skipped=True),
    ]
    for _ in range(3):  # redelivery: counting, not incrementing
        with engine.begin() as conn:
            writes.upsert_finished(conn, finished)
            writes.refresh_exec_counters(conn, ["e1"], T0)
    assert exec_state() == ("completed", 3, 3, 1, 1)

    # Re-projecting the creation record neither resets the status nor the counters.
    with engine.begin() as conn:
        writes.upsert_executions(conn, [exec_row("e1", ["pc1", "pc2", "pc3"])], T0)
    assert exec_state() == ("completed", 3, 3, 1, 1)


def test_results_before_their_exec_record_are_counted(engine: Engine) -> None:
    with engine.begin() as conn:
        writes.upsert_finished(conn, [row("r1", "e9", "pc1", state="finished", at=T0)])
        writes.refresh_exec_counters(conn, ["e9"], T0)  # no exec row yet: nothing to do
        writes.upsert_executions(conn, [exec_row("e9", ["pc1"])], T0)
    with engine.connect() as conn:
        got = conn.execute(
            select(executions.c.status, executions.c.finished_count).where(
                executions.c.exec_id == "e9"
            )
        ).one()
    assert tuple(got) == ("completed", 1)


def test_agents_upsert_keeps_first_seen(engine: Engine) -> None:
    def hb(at: datetime, version: str) -> dict[str, Any]:
        return {
            "pc_id": "pc1", "hostname": "h", "agent_version": version, "os_family": "linux",
            "os_version": "", "boot_time": None, "cpu_percent": 0.5, "rss_bytes": 1,
            "groups": ["web"], "schedule_set_version": None, "last_command_at": None,
            "queue_length": 0, "running": 0, "last_seen": at, "first_seen": at,
        }  # fmt: skip

    with engine.begin() as conn:
        writes.upsert_agents(conn, [hb(T0, "0.1")])
        writes.upsert_agents(conn, [hb(T0 + timedelta(minutes=1), "0.2")])
    with engine.connect() as conn:
        (agent,) = reads.list_agents(conn)
        alive = reads.alive_agents(conn, T0 + timedelta(seconds=30))
    assert (agent["first_seen"], agent["last_seen"]) == (T0, T0 + timedelta(minutes=1))
    assert agent["agent_version"] == "0.2"
    assert alive == [("pc1", ["web"])]


def test_projection_state_is_set_once(engine: Engine) -> None:
    with engine.begin() as conn:
        assert writes.set_state_if_absent(conn, "db_id", "a", T0) is True
        assert writes.set_state_if_absent(conn, "db_id", "b", T0) is False
        assert writes.get_state(conn, "db_id") == "a"


def test_list_results_newest_first(engine: Engine) -> None:
    with engine.begin() as conn:
        writes.upsert_finished(
            conn,
            [
                row(f"r{i}", "e1", f"pc{i}", state="finished", at=T0 + timedelta(seconds=i))
                for i in range(5)
            ],
        )
    with engine.connect() as conn:
        page = reads.list_results(conn, exec_id="e1", pc_id=None, job_id=None, limit=2, offset=1)
        count = conn.execute(select(results.c.result_id)).all()
    assert [r["result_id"] for r in page.items] == ["r3", "r2"]
    assert (page.total, len(count)) == (5, 5)
