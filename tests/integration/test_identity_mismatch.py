"""The backend rejects what an agent reports in another pc's name (SPEC §8.1): agent A,
with its own broker credential, may publish only on its own subjects — a result, started
event, heartbeat or schedule decision whose payload says pc B is dropped (no row) and
counted on /metrics."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from secure_backend import secured_backend, secured_broker

from kanade.backend.inprocess import InProcessBackend
from kanade.bus.broker import EmbeddedBroker
from kanade.bus.connection import connect
from kanade.bus.credentials import BusCredentials
from kanade.core import subjects as s
from kanade.core.instants import system_clock
from kanade.core.models.decisions import DecisionTotals, ScheduleDecisionReport
from kanade.core.models.wire import EventStarted, Heartbeat, Result, encode
from kanade.security.authority import Authority
from polling import eventually

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path / "security")


@pytest.fixture
def broker(tmp_path: Path, authority: Authority) -> Iterator[EmbeddedBroker]:
    with secured_broker(tmp_path, authority) as b:
        yield b


@pytest.fixture
async def backend(
    tmp_path: Path, broker: EmbeddedBroker, authority: Authority, store_url: str
) -> AsyncIterator[InProcessBackend]:
    async with secured_backend(tmp_path, broker, authority, store_url) as b:
        yield b


def _result(result_id: str, pc_id: str) -> bytes:
    return encode(
        Result(
            result_id=result_id,
            request_id="req-1",
            exec_id="exec-1",
            pc_id=pc_id,
            job_id="hello",
            version="v1",
            exit_code=0,
            finished_at=system_clock(),
        )
    )


def _started(result_id: str, pc_id: str) -> bytes:
    return encode(
        EventStarted(
            result_id=result_id,
            request_id="req-2",
            exec_id="exec-2",
            pc_id=pc_id,
            job_id="hello",
            version="v1",
            started_at=system_clock(),
        )
    )


def _heartbeat(pc_id: str) -> bytes:
    return encode(
        Heartbeat(
            pc_id=pc_id,
            agent_version="test",
            hostname=pc_id,
            os_family="linux",
            sent_at=system_clock(),
        )
    )


def _decision(pc_id: str) -> bytes:
    now = system_clock()
    return ScheduleDecisionReport(
        pc_id=pc_id,
        schedule_id="nightly",
        occurrence_id="nightly@1",
        nominal_time=now,
        decided_at=now,
        result="fired",
        epoch="e1",
        totals=DecisionTotals(fired=1),
    ).encode()


def _mismatches(metrics: str) -> dict[str, float]:
    found = re.findall(r'^kanade_identity_mismatch_total\{kind="(\w+)"\} (\S+)$', metrics, re.M)
    return {kind: float(value) for kind, value in found}


async def test_reports_in_another_pcs_name_are_dropped_and_counted(
    backend: InProcessBackend, broker: EmbeddedBroker, authority: Authority, tmp_path: Path
) -> None:
    api = backend.client
    before = _mismatches((await api.get("/metrics")).text)
    # (live-output chunks: tests/integration/test_live_output.py)
    assert before == {"result": 0, "started": 0, "heartbeat": 0, "decision": 0, "live": 0}
    authority.issue_agent("pc-a", tmp_path / "trust-a")
    creds = BusCredentials.for_agent(tmp_path / "trust-a", "pc-a")
    nc = await connect(broker.url, name="pc-a", retry_forever=False, credentials=creds)
    try:
        js = nc.jetstream(timeout=5)
        # forged: on pc-a's own subjects (all the broker allows it), claiming pc-b
        await js.publish(s.result_subject("pc-a"), _result("forged-result", "pc-b"))
        await js.publish(s.started_subject("pc-a"), _started("forged-started", "pc-b"))
        await nc.publish(s.heartbeat_subject("pc-a"), _heartbeat("pc-b"))
        await js.publish(s.decision_subject("pc-a", "nightly"), _decision("pc-b"))
        # genuine: after the forgeries, so once these land the forgeries were handled
        await js.publish(s.result_subject("pc-a"), _result("real-result", "pc-a"))
        await nc.publish(s.heartbeat_subject("pc-a"), _heartbeat("pc-a"))
        await nc.flush()
    finally:
        await nc.close()

    async def real_rows_landed() -> bool:
        result = await api.get("/api/results/real-result")
        agent = await api.get("/api/agents/pc-a")
        return result.status_code == 200 and agent.status_code == 200

    async def counted() -> bool:
        now = _mismatches((await api.get("/metrics")).text)
        return now == {"result": 1, "started": 1, "heartbeat": 1, "decision": 1, "live": 0}

    await eventually(real_rows_landed, "the genuine result and heartbeat projected", timeout=15)
    await eventually(counted, "every forgery counted on /metrics", timeout=10)
    assert (await api.get("/api/results/forged-result")).status_code == 404
    assert (await api.get("/api/results/forged-started")).status_code == 404
    assert (await api.get("/api/agents/pc-b")).status_code == 404
    assert (await api.get("/api/results/real-result")).json()["pc_id"] == "pc-a"
