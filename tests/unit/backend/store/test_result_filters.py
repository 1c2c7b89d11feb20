"""``list_results`` filters of the results page (status, time range, text), on SQLite."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine
from store_rows import T0, row

from kanade.backend.store import results


def seed(engine: Engine) -> None:
    rows = [
        row("r-ok", "e1", "web-1", state="finished", at=T0),
        row("r-fail", "e1", "web-2", state="finished", at=T0 + timedelta(minutes=1), exit_code=3),
        row("r-skip", "e2", "db-1", state="finished", at=T0 + timedelta(minutes=2),
            exit_code=125, skipped=True, job_id="Backup"),
        row("r-reaped", "e2", "db-2", state="reaped", at=T0 + timedelta(minutes=3),
            exit_code=-1, job_id="Backup"),
    ]  # fmt: skip
    with engine.begin() as conn:
        results.upsert_finished(conn, rows)
        results.insert_started(
            conn, [row("r-run", "e3", "web-3", state="in_flight", at=T0 + timedelta(minutes=4))]
        )


def ids(engine: Engine, **kw: object) -> list[str]:
    with engine.connect() as conn:
        page = results.list_results(
            conn,
            exec_id=None,
            pc_id=None,
            job_id=None,
            limit=100,
            offset=0,
            **kw,  # type: ignore[arg-type]
        )
    return [r["result_id"] for r in page.items]


def test_status_reads_as_the_views_show_it(engine: Engine) -> None:
    seed(engine)
    assert ids(engine, status="ok") == ["r-ok"]
    # failed = a non-zero exit or reaped; a skipped run is not a failure
    assert ids(engine, status="failed") == ["r-reaped", "r-fail"]
    assert ids(engine, status="skipped") == ["r-skip"]
    assert ids(engine, status="running") == ["r-run"]
    assert ids(engine, status="no_result") == []


def test_time_range_is_half_open_on_recorded_at(engine: Engine) -> None:
    seed(engine)
    got = ids(engine, since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3))
    assert got == ["r-skip", "r-fail"]


def test_text_is_found_in_pc_or_job_ignoring_case(engine: Engine) -> None:
    seed(engine)
    assert ids(engine, text="WEB-") == ["r-run", "r-fail", "r-ok"]
    assert ids(engine, text="backup") == ["r-reaped", "r-skip"]
    # LIKE wildcards are searched for, not obeyed
    assert ids(engine, text="%") == []
    assert ids(engine, text="_") == []
