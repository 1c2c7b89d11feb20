"""Ingest while pruning (SPEC §4.12, §10.1): results per second projected into SQLite while
the backend's retention worker prunes a results table of N old rows, against the same
table with retention off.

The database is created by the backend's own migrations (``kanade-backend user list``),
then seeded with N results 40 days old — past the 30-day default — in batched inserts (one
exec per 1 000 of them, ended as long ago), once, and copied for every run. Each run
publishes a backlog of fresh results into the stream of a fresh broker, starts a backend on
the copy and times the projection of the backlog (as ``bench ingest``) while, in the
pruning runs, the retention worker's first pass deletes the old rows in its batches.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from kanade.bench.common import BIN, Proc, emit
from kanade.bench.ingest import publish_backlog
from kanade.bench.security import backend_args, probe_credentials, secure_broker
from kanade.bus.broker import free_port

PER_EXEC = 1000
AGE = timedelta(days=40)
SEED_BATCH = 10_000
# Retention's settings in each mode: the defaults (30 days: every seeded row is over), or
# results and execs kept for ever (the same table, nothing pruned).
PRUNING: tuple[str, ...] = ()
BASELINE = (
    "results.max_age=off",
    "results.max_rows=off",
    "executions.max_age=off",
    "executions.max_rows=off",
)
_PRUNED = re.compile(r'^kanade_retention_pruned_rows_total\{table="results"\} (\S+)$', re.M)
_BATCH_SUM = re.compile(r"^kanade_retention_batch_seconds_sum (\S+)$", re.M)
_BATCH_COUNT = re.compile(r"^kanade_retention_batch_seconds_count (\S+)$", re.M)


def _ts(at: datetime) -> str:
    """The text the backend's SQLite timestamps are stored as (UTC, naive, microseconds)."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def migrate(db_file: Path) -> None:
    """An empty database at the schema's head, by the backend's own migrations."""
    subprocess.run(
        [str(BIN / "kanade-backend"), "user", "list", "--db", str(db_file)],
        check=True,
        capture_output=True,
        timeout=300,
    )


def seed(db_file: Path, rows: int, *, now: datetime) -> None:
    """``rows`` finished results recorded ``AGE`` ago, of ended execs of ``PER_EXEC`` pcs,
    inserted ``SEED_BATCH`` at a time; the database is marked as projected (no rebuild)."""
    at = _ts(now - AGE)
    con = sqlite3.connect(db_file)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-262144")  # 256 MiB: the indexes' pages stay in memory
        con.execute(
            "INSERT INTO projection_state (key, value, updated_at) VALUES ('db_id', ?, ?)",
            ("bench-retention", _ts(now)),
        )
        execs = (rows + PER_EXEC - 1) // PER_EXEC
        pcs = [f"sim-{i}" for i in range(PER_EXEC)]
        con.executemany(
            "INSERT INTO executions (exec_id, kind, job_id, version, target, expected_pcs, "
            "expected_count, status, initiated_by, created_at, updated_at, started_count, "
            "finished_count, failed_count, skipped_count, no_result_count, request_id, "
            "created_status, deadline_at, ended_at) VALUES "
            "(?, 'job', 'bench-old', '1', ?, ?, ?, 'completed', 'bench', ?, ?, ?, ?, 0, 0, 0, "
            "?, 'pending', ?, ?)",
            [
                (f"old-{e}", json.dumps({"all": True}), json.dumps(pcs), PER_EXEC, at, at,
                 PER_EXEC, PER_EXEC, f"req-{e}", at, at)
                for e in range(execs)
            ],
        )  # fmt: skip
        for start in range(0, rows, SEED_BATCH):
            con.executemany(
                "INSERT INTO results (result_id, exec_id, request_id, pc_id, job_id, version, "
                "state, exit_code, skipped, stdout, stderr, stdout_bytes, stderr_bytes, "
                "started_at, finished_at, attempts, recorded_at) VALUES "
                "(?, ?, ?, ?, 'bench-old', '1', 'finished', 0, 0, 'ok\n', '', 3, 0, ?, ?, 1, ?)",
                [
                    (f"r-{i}", f"old-{i // PER_EXEC}", f"req-{i // PER_EXEC}",
                     pcs[i % PER_EXEC], at, at, at)
                    for i in range(start, min(rows, start + SEED_BATCH))
                ],
            )  # fmt: skip
            con.commit()
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


def _metric(pattern: re.Pattern[str], text: str) -> float:
    m = pattern.search(text)
    return float(m.group(1)) if m else 0.0


def one_run(template: Path, work: Path, *, rows: int, results: int, retain: tuple[str, ...],
            wait_for_pruning: bool) -> dict[str, Any]:  # fmt: skip
    """One backend on a copy of ``template``: its ingest rate and, when pruning, how the
    pruning went."""
    work.mkdir(parents=True)
    db_file = work / "kanade.db"
    shutil.copyfile(template, db_file)
    broker, authority = secure_broker(work)
    broker.start()
    backend = None
    try:
        # One exec per 1 000 results, as a fleet's execs are (one exec of 100 000 would make
        # every batch recount a growing exec: that, not the table, would bound the rate).
        asyncio.run(publish_backlog(broker.url, probe_credentials(authority), results,
                                    per_exec=PER_EXEC))  # fmt: skip
        port = free_port()
        args = [a for r in retain for a in ("--retain", r)]
        backend = Proc([str(BIN / "kanade-backend"), "run", "--nats-url", broker.url,
                        "--db", str(db_file), "--http-port", str(port),
                        *backend_args(authority, work), *args],
                       work / "backend.log")  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        # A safety net only: a slow disk prunes a million rows in minutes, not hours.
        budget = 600 + rows / 200
        deadline = time.monotonic() + budget
        first: tuple[float, int] | None = None
        t_pruning: float | None = None
        with httpx.Client(base_url=url, timeout=30) as http:

            def poll() -> tuple[int, float]:
                try:
                    total = http.get(
                        "/api/results", params={"job_id": "bench-ingest", "limit": 1}
                    ).json()["total"]
                    text = http.get("/metrics").text
                except (httpx.HTTPError, KeyError, ValueError):
                    return 0, 0.0
                return int(total), _metric(_PRUNED, text)

            while True:
                total, pruned = poll()
                now = time.perf_counter()
                if pruned and t_pruning is None:
                    t_pruning = now
                if total and first is None:
                    first = (now, total)
                if total >= results:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {total}/{results} rows after {budget:.0f} s")
                time.sleep(0.05)
            end = time.perf_counter()
            assert first is not None
            out: dict[str, Any] = {
                "rate": (results - first[1]) / max(1e-9, end - first[0]),
                "pruned_during_ingest": pruned,
                "prune_rate_during_ingest": pruned / max(1e-9, end - first[0]),
            }
            if not wait_for_pruning:
                return out
            while pruned < rows:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {pruned:.0f}/{rows} rows pruned after {budget:.0f} s")
                time.sleep(0.2)
                _total, pruned = poll()
                if pruned and t_pruning is None:
                    t_pruning = time.perf_counter()
            done = time.perf_counter()
            text = http.get("/metrics").text
            batches = _metric(_BATCH_COUNT, text)
            out["prune_rate"] = rows / max(1e-9, done - (t_pruning or done))
            out["batch_ms"] = 1000 * _metric(_BATCH_SUM, text) / max(1.0, batches)
            return out
    finally:
        if backend is not None:
            backend.stop()
        broker.stop()


def run(rows: int = 1_000_000, results: int = 100_000, runs: int = 3) -> list[dict[str, object]]:
    """Print the JSON lines (and return them): ingest while pruning ``rows`` old results,
    ingest with retention off, the pruning rate and the mean time a batch held the writer."""
    with tempfile.TemporaryDirectory(prefix="kanade-bench-") as tmp_s:
        tmp = Path(tmp_s)
        template = tmp / "template.db"
        t0 = time.perf_counter()
        migrate(template)
        seed(template, rows, now=datetime.now(UTC))
        seeded_s = time.perf_counter() - t0
        pruning: list[dict[str, Any]] = []
        baseline: list[dict[str, Any]] = []
        for i in range(runs):  # interleaved: a busy moment of the machine hits both alike
            # The first pruning run goes on until the whole table is pruned (the pruning rate);
            # the others stop with the ingest, which is what they compare.
            pruning.append(one_run(template, tmp / f"pruning-{i}", rows=rows, results=results,
                                   retain=PRUNING, wait_for_pruning=i == 0))
            baseline.append(one_run(template, tmp / f"baseline-{i}", rows=rows, results=results,
                                    retain=BASELINE, wait_for_pruning=False))  # fmt: skip
    params = {"rows": rows, "results": results}
    overlap = min(r["pruned_during_ingest"] for r in pruning) / rows
    return [
        emit("retention.ingest_while_pruning", params, [r["rate"] for r in pruning],
             unit="results/s", pruned_share_when_ingest_done=round(overlap, 3)),
        emit("retention.ingest_baseline", params, [r["rate"] for r in baseline],
             unit="results/s", note="the same table, retention off"),
        emit("retention.prune_rate", params, [r["prune_rate"] for r in pruning[:1]],
             unit="rows/s", note="the whole pass, from its first batch to the last row"),
        emit("retention.prune_rate_during_ingest", params,
             [r["prune_rate_during_ingest"] for r in pruning], unit="rows/s",
             note="while the backlog was being projected: pruning yields to it"),
        emit("retention.batch_hold", params, [r["batch_ms"] for r in pruning[:1]], unit="ms",
             note="mean time one batch held the database writer", seed_s=round(seeded_s, 1)),
    ]  # fmt: skip
