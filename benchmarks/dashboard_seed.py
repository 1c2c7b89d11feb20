"""Seed a running backend with a simulated fleet, through the bus (never the DB directly).

* heartbeats of N simulated agents are published on ``kanade.hb.<pc>`` (core NATS), so
  the backend's heartbeat sink upserts them like real ones;
* executions are created through the API (``POST /api/run`` to ``all``), so the
  expected pcs are the simulated alive agents;
* one Result per (exec, pc) is published to JetStream on ``kanade.result.<pc>`` (with
  the broker dedup id the agents use), and the projector writes the rows.

The outcome mix is deterministic: mostly exit 0, some failures, some skips, and the
last exec can be left half-reported (EventStarted only) to show a running exec.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import nats

from kanade.bus.credentials import BusCredentials
from kanade.core import subjects
from kanade.core.models.wire import EventStarted, Heartbeat, Result, encode

OSES = [
    ("linux", "Debian 12"),
    ("linux", "Ubuntu 24.04"),
    ("windows", "11 23H2"),
    ("darwin", "14.5"),
]
VERSIONS = ["0.1.0", "0.1.0", "0.1.0", "0.0.9"]
GROUPS = ["web", "db", "office", "lab", "canary"]


def pc_name(i: int) -> str:
    return f"sim-{i:05d}"


def heartbeat(i: int, now: datetime) -> Heartbeat:
    os_family, os_version = OSES[i % len(OSES)]
    groups = [GROUPS[i % 4]] + (["canary"] if i % 50 == 0 else [])
    return Heartbeat(
        pc_id=pc_name(i),
        agent_version=VERSIONS[i % len(VERSIONS)],
        hostname=f"host-{i:05d}.example.internal",
        os_family=os_family,
        os_version=os_version,
        boot_time=now - timedelta(days=i % 30, hours=i % 24),
        cpu_percent=round((i * 7 % 30) / 10, 1),
        rss_bytes=(28 + i % 9) * 1024 * 1024,
        groups=groups,
        sent_at=now,
    )


async def publish_heartbeats(nc: nats.NATS, agents: int) -> None:
    now = datetime.now(UTC)
    for i in range(agents):
        await nc.publish(subjects.heartbeat_subject(pc_name(i)), encode(heartbeat(i, now)))
    await nc.flush()


def outcome(i: int, k: int) -> tuple[int, bool, str, str]:
    """(exit_code, skipped, stdout, stderr) for pc i of exec k."""
    n = (i * 31 + k * 17) % 100
    if n < 3:
        return 125, True, "", "starting deadline passed"
    if n < 10:
        return 1, False, f"checking host-{i:05d}\n", "error: disk quota exceeded\n"
    return 0, False, f"ok from host-{i:05d}\n", ""


async def publish_results(
    js: nats.js.JetStreamContext,
    exec_id: str,
    job_id: str,
    agents: int,
    k: int,
    *,
    finished_share: float = 1.0,
) -> int:
    now = datetime.now(UTC)
    sem = asyncio.Semaphore(256)
    sent = 0

    async def one(i: int) -> None:
        nonlocal sent
        pc = pc_name(i)
        result_id = uuid.uuid4().hex
        request_id = uuid.uuid4().hex
        started = now - timedelta(milliseconds=200 + i % 900)
        async with sem:
            if i >= agents * finished_share:
                ev = EventStarted(
                    result_id=result_id,
                    request_id=request_id,
                    exec_id=exec_id,
                    pc_id=pc,
                    job_id=job_id,
                    version="1",
                    started_at=started,
                    timeout_s=60,
                )
                await js.publish(
                    subjects.started_subject(pc),
                    encode(ev),
                    headers={"Nats-Msg-Id": f"started-{result_id}"},
                )
                return
            code, skipped, out, err = outcome(i, k)
            res = Result(
                result_id=result_id,
                request_id=request_id,
                exec_id=exec_id,
                pc_id=pc,
                job_id=job_id,
                version="1",
                exit_code=code,
                skipped=skipped,
                stdout=out,
                stderr=err,
                stdout_bytes=len(out),
                stderr_bytes=len(err),
                started_at=started,
                finished_at=now,
            )
            await js.publish(
                subjects.result_subject(pc), encode(res), headers={"Nats-Msg-Id": result_id}
            )
            sent += 1

    await asyncio.gather(*(one(i) for i in range(agents)))
    return sent


async def seed(
    url: str,
    nats_url: str,
    *,
    agents: int,
    execs: int,
    running_last: bool = False,
    headers: dict[str, str] | None = None,
    timeout: float = 120.0,
    credentials: BusCredentials | None = None,
) -> dict[str, int]:
    """Seed and wait until the API shows all of it. Returns counts.

    It speaks for many pcs at once, so it needs the backend's credential (``credentials``,
    else ``$KANADE_NATS_CREDS``/``$KANADE_NATS_CA``): the broker admits no anonymous client."""
    creds = credentials or BusCredentials.from_env()
    nc = await nats.connect(nats_url, **(creds.connect_options() if creds else {}))
    try:
        await publish_heartbeats(nc, agents)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
            await _wait(http, "/api/agents", lambda d: d["total"] >= agents, timeout)
            js = nc.jetstream()
            expected = 0
            for k in range(execs):
                r = await http.post(
                    "/api/run",
                    json={
                        "script": f"echo batch {k}",
                        "target": {"all": True},
                        "timeout": "60s",
                    },
                )
                r.raise_for_status()
                created = r.json()
                share = 0.6 if running_last and k == execs - 1 else 1.0
                expected += await publish_results(
                    js, created["exec_id"], created["job_id"], agents, k, finished_share=share
                )
            rows = agents * execs  # finished results plus in-flight (started) rows
            await _wait(http, "/api/results?limit=1", lambda d: d["total"] >= rows, timeout)
    finally:
        await nc.close()
    return {"agents": agents, "execs": execs, "results": expected, "rows": agents * execs}


async def _wait(http: httpx.AsyncClient, path: str, ok: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await http.get(path)
        if r.status_code == 200 and ok(r.json()):  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{path} did not reach the seeded state in {timeout:.0f}s")
