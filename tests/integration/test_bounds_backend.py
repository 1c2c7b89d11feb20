"""Issue #15 items 4 and 6, the backend side, against a real ``kanade-backend`` process, a
real broker and its SQLite file: what an agent reports is bounded at decode.

* one heartbeat with ``rss_bytes = 2^64`` once made every later heartbeat write fail; the
  fleet went stale until a restart. Now it is dropped and counted, and the other agents'
  heartbeats (and its own next good one) land;
* empty and 100 000-character result ids, an exit code beyond 64 bits, a finish in year
  9999 and a started event whose timeout would expire its row in year 9999 are dropped and
  counted; none leaves a row; a 7.9 MB inline stdout is stored cut to the inline limit with
  a note; a good result behind all of them lands.

Each publishes with the agent's own broker identity (the broker lets it write only its own
subjects), and prints one JSON line with how long the backend took to answer each bad
input (dropped and counted) and how much its RSS grew.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
from nats.aio.client import Client
from rollout_stack import Backend, Stack

from kanade.bus.connection import connect
from kanade.bus.credentials import BusCredentials
from kanade.core import subjects
from kanade.core.ids import new_id, result_id_for
from kanade.core.instants import format_instant, system_clock
from kanade.core.models.wire import EventStarted, Heartbeat, Result, encode
from kanade.security.authority import Authority
from polling import eventually

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

MB = 1024 * 1024
INLINE_LIMIT = 1024 * 1024  # kanade.core.bounds.INLINE_LIMIT (a literal: this
# test must fail on a tree without the module, for the behaviour, not an ImportError)


def dropped(b: Backend, kind: str) -> float:
    with b.client() as h:
        text = h.get("/metrics").text
    return dropped_in(text, kind)


def dropped_in(text: str, kind: str) -> float:
    found = re.search(
        rf'^kanade_dropped_messages_total\{{kind="{kind}",reason="invalid"\}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


def rss_mb(b: Backend) -> float:
    return psutil.Process(b.proc.pid).memory_info().rss / MB


@pytest.fixture
async def as_agent(
    stack: Stack, authority: Authority, tmp_path: Path
) -> AsyncIterator[Callable[[str], Any]]:
    """Connect as a pc's own broker identity (what a real or compromised agent holds)."""
    clients: list[Client] = []

    async def open_as(pc_id: str) -> Client:
        trust = tmp_path / f"trust-{pc_id}"
        authority.issue_agent(pc_id, trust)
        nc = await connect(
            stack.broker.url,
            name=pc_id,
            retry_forever=False,
            credentials=BusCredentials.for_agent(trust, pc_id),
        )
        clients.append(nc)
        return nc

    yield open_as
    for nc in clients:
        await nc.close()


def heartbeat(pc_id: str, **fields: Any) -> bytes:
    body = json.loads(
        encode(
            Heartbeat(
                pc_id=pc_id,
                agent_version="test",
                hostname=pc_id,
                os_family="linux",
                sent_at=system_clock(),
            )
        )
    )
    return json.dumps({**body, **fields}).encode()


def result(pc_id: str, **fields: Any) -> dict[str, Any]:
    request_id = new_id()
    body = json.loads(
        encode(
            Result(
                result_id=result_id_for(request_id, pc_id),
                request_id=request_id,
                exec_id=new_id(),
                pc_id=pc_id,
                job_id="hello",
                version="1",
                exit_code=0,
                stdout="fine\n",
                finished_at=system_clock(),
            )
        )
    )
    return {**body, **fields}


def started(pc_id: str, **fields: Any) -> dict[str, Any]:
    request_id = new_id()
    body = json.loads(
        encode(
            EventStarted(
                result_id=result_id_for(request_id, pc_id),
                request_id=request_id,
                exec_id=new_id(),
                pc_id=pc_id,
                job_id="hello",
                version="1",
                started_at=system_clock(),
            )
        )
    )
    return {**body, **fields}


async def answered(b: Backend, kind: str, before: float, t0: float, n: int = 1) -> float:
    """Milliseconds from ``t0`` (the publish) until the backend counted ``n`` more dropped
    messages of ``kind`` (polled on /metrics every 5 ms over one connection)."""
    with b.client() as h:
        await eventually(
            lambda: dropped_in(h.get("/metrics").text, kind) >= before + n,
            f"{n} {kind} message(s) dropped",
            timeout=10,
            interval=0.005,
        )
    return (time.monotonic() - t0) * 1000


async def test_one_absurd_heartbeat_does_not_take_the_fleet_offline(
    stack: Stack, as_agent: Callable[[str], Any]
) -> None:
    b = stack.backend()
    rss0 = rss_mb(b)
    pc_a, pc_b = await as_agent("pc-a"), await as_agent("pc-b")
    before = dropped(b, "heartbeat")
    t0 = time.monotonic()
    await pc_a.publish(subjects.heartbeat_subject("pc-a"), heartbeat("pc-a", rss_bytes=2**64))
    await pc_a.flush()
    await pc_b.publish(subjects.heartbeat_subject("pc-b"), heartbeat("pc-b"))
    await pc_b.flush()

    def alive() -> set[str]:
        return {a["pc_id"] for a in b.get("/api/agents", status="alive")["items"]}

    # Before the fix every flush after the bad heartbeat failed: pc-b never showed up.
    await eventually(lambda: "pc-b" in alive(), "pc-b's heartbeat stored", timeout=10)
    good_ms = (time.monotonic() - t0) * 1000
    await pc_a.publish(subjects.heartbeat_subject("pc-a"), heartbeat("pc-a"))
    await pc_a.flush()
    await eventually(lambda: alive() == {"pc-a", "pc-b"}, "pc-a's next heartbeat", timeout=10)
    assert dropped(b, "heartbeat") == before + 1
    # How fast the backend answers one (drops and counts it), alone:
    t0 = time.monotonic()
    await pc_a.publish(subjects.heartbeat_subject("pc-a"), heartbeat("pc-a", rss_bytes=2**64))
    await pc_a.flush()
    ms = await answered(b, "heartbeat", before + 1, t0)
    print(json.dumps({"bounds": "heartbeat rss_bytes=2^64", "dropped_in_ms": round(ms),
                      "next_heartbeat_stored_in_ms": round(good_ms),
                      "backend_rss_growth_mb": round(rss_mb(b) - rss0, 1)}))


async def test_absurd_results_are_dropped_and_counted_and_text_is_cut(
    stack: Stack, as_agent: Callable[[str], Any]
) -> None:
    b = stack.backend()
    rss0 = rss_mb(b)
    nc = await as_agent("pc-a")
    js = nc.jetstream(timeout=10)
    year_9999 = "9999-12-31T00:00:00Z"
    bad_results = {
        "empty result_id": result("pc-a", result_id=""),
        "100 000-character result_id": result("pc-a", result_id="r" * 100_000),
        "exit_code 2^64": result("pc-a", exit_code=2**64),
        "finished_at year 9999": result("pc-a", finished_at=year_9999),
        "stdout_bytes -1": result("pc-a", stdout_bytes=-1),
    }
    bad_started = {
        "timeout_s 1e308 (expires in year 9999)": started("pc-a", timeout_s=1e308),
        "timeout_s NaN": started("pc-a", timeout_s=float("nan")),
        "started_at year 1": started("pc-a", started_at="0001-01-01T00:00:00Z"),
    }
    huge = result("pc-a", stdout="x" * (7_900_000), stdout_bytes=7_900_000)
    good = result("pc-a")
    before = dropped(b, "results")
    for what, body in [*bad_results.items(), *bad_started.items()]:
        subject = (
            subjects.started_subject("pc-a")
            if what in bad_started
            else subjects.result_subject("pc-a")
        )
        await js.publish(subject, json.dumps(body).encode())  # NaN as Python's json writes it
    await js.publish(subjects.result_subject("pc-a"), json.dumps(huge).encode())
    await js.publish(subjects.result_subject("pc-a"), json.dumps(good).encode())

    def rows() -> dict[str, dict[str, Any]]:
        items = b.get("/api/results", pc_id="pc-a", limit=100)["items"]
        return {r["result_id"]: r for r in items}

    await eventually(lambda: good["result_id"] in rows(), "the good result stored", timeout=15)
    stored = rows()
    assert set(stored) == {huge["result_id"], good["result_id"]}, sorted(stored)[:5]
    cut = stored[huge["result_id"]]
    assert len(cut["stdout"]) == INLINE_LIMIT
    assert "stdout cut to 1048576 characters on receipt" in cut["note"]
    assert cut["stdout_bytes"] == 7_900_000  # what the agent said it produced
    horizon = datetime.now(UTC) + timedelta(days=30)
    for row in stored.values():
        for key in ("finished_at", "started_at", "expires_at"):
            if row[key] is not None:
                assert datetime.fromisoformat(row[key]) < horizon, (key, row[key])
    assert dropped(b, "results") == before + len(bad_results) + len(bad_started)

    # How fast the backend answers each (drops and counts it), one at a time:
    timings: dict[str, int] = {}
    for what, body in [*bad_results.items(), *bad_started.items()]:
        subject = (
            subjects.started_subject("pc-a")
            if what in bad_started
            else subjects.result_subject("pc-a")
        )
        again = {**body, "request_id": new_id()}
        count = dropped(b, "results")
        t0 = time.monotonic()
        await js.publish(subject, json.dumps(again).encode())
        timings[what] = round(await answered(b, "results", count, t0))
    growth = rss_mb(b) - rss0
    assert growth < 50, f"backend RSS grew {growth:.0f} MB"
    print(json.dumps({"bounds": "results", "dropped_in_ms": timings,
                      "backend_rss_growth_mb": round(growth, 1),
                      "checked_at": format_instant(system_clock())}))
