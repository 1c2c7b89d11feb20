"""Result rows and their UPSERT semantics, on a real SQLite file and PostgreSQL database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError
from store_rows import T0, row

from kanade.backend.store import results
from kanade.backend.store.failures import is_transient
from kanade.backend.store.tables import results as results_table
from kanade.backend.store.upsert import copy_rows


def get(engine: Engine, result_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        found = results.get_result(conn, result_id)
    assert found is not None
    return found


def test_started_then_result_completes_the_row(engine: Engine) -> None:
    with engine.begin() as conn:
        results.insert_started(
            conn, [row("r1", "e1", "pc1", state="in_flight", at=T0, timeout_s=30.0)]
        )
    assert get(engine, "r1")["state"] == "in_flight"
    later = T0 + timedelta(seconds=5)
    with engine.begin() as conn:
        results.upsert_finished(conn, [row("r1", "e1", "pc1", state="finished", at=later)])
    got = get(engine, "r1")
    assert (got["state"], got["exit_code"], got["stdout"]) == ("finished", 0, "hi\n")
    assert got["recorded_at"] == later
    assert got["timeout_s"] == 30.0  # kept from the EventStarted


def test_started_after_result_changes_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        results.upsert_finished(conn, [row("r1", "e1", "pc1", state="finished", at=T0)])
    before = get(engine, "r1")
    with engine.begin() as conn:
        results.insert_started(
            conn, [row("r1", "e1", "pc1", state="in_flight", at=T0 + timedelta(hours=1))]
        )
    assert get(engine, "r1") == before


def test_first_finished_result_wins_but_a_reaped_row_is_overwritten(engine: Engine) -> None:
    first = row("r1", "e1", "pc1", state="finished", at=T0)
    dup = row("r1", "e1", "pc1", state="finished", at=T0 + timedelta(minutes=1), stdout="other")
    with engine.begin() as conn:
        results.upsert_finished(conn, [first, dup])  # same batch
        results.upsert_finished(conn, [dup])  # and a later one
    assert get(engine, "r1")["recorded_at"] == T0

    reaped = row("r2", "e1", "pc2", state="reaped", at=T0, exit_code=-1)
    with engine.begin() as conn:
        results.insert_started(conn, [reaped])
        results.upsert_finished(conn, [row("r2", "e1", "pc2", state="finished", at=T0)])
    assert get(engine, "r2")["state"] == "finished"


def test_list_results_newest_first(engine: Engine) -> None:
    with engine.begin() as conn:
        results.upsert_finished(
            conn,
            [
                row(f"r{i}", "e1", f"pc{i}", state="finished", at=T0 + timedelta(seconds=i))
                for i in range(5)
            ],
        )
    with engine.connect() as conn:
        page = results.list_results(conn, exec_id="e1", pc_id=None, job_id=None, limit=2, offset=1)
        count = conn.execute(select(results_table.c.result_id)).all()
    assert [r["result_id"] for r in page.items] == ["r3", "r2"]
    assert (page.total, len(count)) == (5, 5)


def test_output_with_a_nul_byte_is_stored_on_every_dialect(engine: Engine) -> None:
    # PostgreSQL refuses NUL in text; a script printing binary output keeps its result.
    finished = row("r1", "e1", "pc1", state="finished", at=T0, exit_code=0,
                   stdout="a\x00b", stderr="\x00", note="n\x00")  # fmt: skip
    with engine.begin() as conn:
        results.upsert_finished(conn, [finished])
    got = get(engine, "r1")
    assert (got["stdout"], got["stderr"], got["note"]) == ("a\ufffdb", "\ufffd", "n\ufffd")


def test_a_batch_keeps_every_value_as_given_on_every_dialect(engine: Engine) -> None:
    # The PostgreSQL batch travels as one JSON document: instants keep their instant,
    # a number its size, text its characters (quotes, backslashes, non-ASCII, newlines).
    odd = 'quote " back \\ naïve ✓ tab\t line\n'
    rows = [
        row(f"r{i}", "e1", "pc1", state="finished", at=T0 + timedelta(microseconds=i),
            exit_code=-(2**31) if i % 2 else 2**31 - 1, stdout=odd * (i + 1), timeout_s=0.1 + i)
        for i in range(3)
    ]  # fmt: skip
    with engine.begin() as conn:
        results.upsert_finished(conn, rows)
    for i in range(3):
        got = get(engine, f"r{i}")
        assert got["recorded_at"] == T0 + timedelta(microseconds=i)
        assert got["exit_code"] == (-(2**31) if i % 2 else 2**31 - 1)
        assert got["stdout"] == odd * (i + 1) and got["timeout_s"] == 0.1 + i


def test_a_value_too_long_for_its_column_is_refused_not_cut_on_postgresql(
    engine: Engine,
) -> None:
    # Refused as row by row would be (the projector then isolates the row), never cut short.
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores a string of any length")
    too_long = row("r" * 65, "e1", "pc1", state="finished", at=T0)
    with pytest.raises(DBAPIError, match="too long") as refused, engine.begin() as conn:
        results.upsert_finished(conn, [row("ok", "e1", "pc1", state="finished", at=T0), too_long])
    assert not is_transient(refused.value)  # a row the projector isolates, not a DB failure
    with engine.connect() as conn:
        assert results.get_result(conn, "ok") is None
    # The rolled-back transaction took its staging table with it: the next batch still lands.
    with engine.begin() as conn:
        results.upsert_finished(conn, [row("ok", "e1", "pc1", state="finished", at=T0)])
    assert get(engine, "ok")["state"] == "finished"


def test_a_connection_lost_during_copy_is_a_transient_failure(engine: Engine) -> None:
    # The batch goes to PostgreSQL by COPY, outside SQLAlchemy's statements: a server that
    # goes away then must still read as a failure of the database (the projector redelivers
    # the batch), never as a refused row (it would skip the batch's results).
    if engine.dialect.name != "postgresql":
        pytest.skip("COPY and a server connection to lose: PostgreSQL")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TEMPORARY TABLE copied (n integer)")
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with engine.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        with pytest.raises(DBAPIError) as failed:
            copy_rows(conn, "COPY copied (n) FROM STDIN", [(i,) for i in range(1000)])
        assert failed.value.connection_invalidated and is_transient(failed.value)
        assert conn.invalidated  # not handed out again by the pool
    with engine.begin() as conn:  # the pool hands out a live connection again
        assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
