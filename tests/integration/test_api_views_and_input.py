"""Bad input is a 400 naming field paths; list views filter and paginate alike;
``/metrics`` shows projector lag, execs/agents by status and reaped rows; freeze."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kanade.backend.catalog.freeze import get_freeze
from kanade.backend.inprocess import InProcessBackend
from kanade.bus import Bus
from kanade.core import subjects
from kanade.core.freeze import is_frozen
from kanade.core.models.wire import Heartbeat, encode
from polling import eventually as shared_eventually

pytestmark = pytest.mark.stores  # SQLite and PostgreSQL (tests/pgdb.py)

DEADLINE = 15.0


eventually = functools.partial(shared_eventually, timeout=DEADLINE)


def paths(r: Any) -> set[str]:
    return {e["path"] for e in r.json()["errors"]}


@pytest.mark.parametrize(
    ("body", "content_type", "wanted"),
    [
        ("id: x\nversion: '1'\nexecute: {shell: sh, script: true, timeout: 30 sec}\n",
         "application/yaml", {"execute.timeout"}),
        ("id: x\nversion: 1.10\nexecute: {shell: zsh, script: true, timeout: 1s}\nbogus: 1\n",
         "application/yaml", {"version", "execute.shell", "bogus"}),
        ("id: [unclosed\n", "application/yaml", None),
        ('{"id": "x", "version": "1", "execute": {"shell": "sh", "timeout": "1s"}',
         "application/json", None),
        ('{"id": "x", "version": "1", "execute": {"shell": "sh", "timeout": "1s"}}',
         "application/json", {"execute"}),
    ],
)  # fmt: skip
async def test_bad_job_documents_are_400_with_field_paths(
    backend: InProcessBackend, body: str, content_type: str, wanted: set[str] | None
) -> None:
    r = await backend.client.post(
        "/api/jobs", content=body.encode(), headers={"content-type": content_type}
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]
    if wanted is not None:
        assert wanted <= paths(r), r.json()


async def test_bad_request_bodies_and_params_name_their_fields(backend: InProcessBackend) -> None:
    r = await backend.client.post(
        "/api/run", json={"script": "", "timeout": "5 parsecs", "target": {"pc": ["a"]}}
    )
    assert r.status_code == 400
    assert {"script", "timeout", "target.pc"} <= paths(r)
    r = await backend.client.put(
        "/api/freeze",
        json={"from": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z", "by": "me"},
    )
    assert r.status_code == 400 and "by" in paths(r)
    r = await backend.client.put(
        "/api/freeze", json={"from": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z"}
    )
    assert r.status_code == 400 and "from must be before until" in r.text
    r = await backend.client.get("/api/results", params={"exit_code": 2**70, "offset": -1})
    assert r.status_code == 400 and paths(r) == {"query.exit_code", "query.offset"}
    r = await backend.client.get("/api/checks", params={"status": "great"})
    assert r.status_code == 400 and paths(r) == {"query.status"}


async def test_freeze_set_status_clear(backend: InProcessBackend, nats_url: str) -> None:
    assert (await backend.client.get("/api/freeze")).json() == {"frozen": False, "freeze": None}
    until = datetime.now(UTC) + timedelta(hours=2)
    r = await backend.client.put(
        "/api/freeze", json={"until": until.isoformat(), "reason": "change window"}
    )
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["frozen"] is True and view["freeze"]["reason"] == "change window"
    assert view["freeze"]["by"] == "anonymous" and view["freeze"]["from"] is None
    stored = await get_freeze(backend.services.link.bus())
    assert stored is not None and is_frozen(stored, datetime.now(UTC))
    assert not is_frozen(stored, until)
    r = await backend.client.put(
        "/api/freeze", json={"until": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}
    )
    assert r.status_code == 400 and paths(r) == {"until"}
    future = datetime.now(UTC) + timedelta(days=1)
    r = await backend.client.put("/api/freeze", json={"from": future.isoformat()})
    assert r.json()["frozen"] is False and r.json()["freeze"]["from"]  # scheduled, not yet
    r = await backend.client.delete("/api/freeze")
    assert r.json() == {"frozen": False, "freeze": None, "cleared": True}
    assert (await backend.client.delete("/api/freeze")).json()["cleared"] is False


def heartbeat(pc: str, groups: list[str], os_family: str, version: str) -> Heartbeat:
    return Heartbeat(
        pc_id=pc,
        agent_version=version,
        hostname=pc,
        os_family=os_family,
        groups=groups,
        sent_at=datetime.now(UTC),
    )


async def test_list_views_filter_and_paginate(backend: InProcessBackend, bus: Bus) -> None:
    fleet = [
        ("pc1", ["web", "eu_1"], "linux", "1.0"),
        ("pc2", ["web"], "windows", "1.0"),
        ("pc3", ["db"], "linux", "2.0"),
    ]
    for pc, groups, os_family, version in fleet:
        hb = heartbeat(pc, groups, os_family, version)
        await bus.nc.publish(subjects.heartbeat_subject(pc), encode(hb))

    async def agents(**params: Any) -> dict[str, Any]:
        r = await backend.client.get("/api/agents", params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def all_in() -> bool:
        return (await agents())["total"] == 3

    await eventually(all_in, "heartbeats projected")
    page = await agents(limit=2, offset=1)
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    assert [a["pc_id"] for a in page["items"]] == ["pc2", "pc3"]
    assert [a["pc_id"] for a in (await agents(group="web"))["items"]] == ["pc1", "pc2"]
    assert [a["pc_id"] for a in (await agents(group="eu_1"))["items"]] == ["pc1"]
    assert (await agents(group="eu%"))["total"] == 0  # LIKE wildcards are literal
    assert (await agents(group="eu"))["total"] == 0  # whole group names only
    assert [a["pc_id"] for a in (await agents(os_family="linux", version="2.0"))["items"]] == [
        "pc3"
    ]
    assert (await agents(status="alive"))["total"] == 3
    assert (await agents(status="offline"))["total"] == 0

    job = {
        "id": "hello",
        "version": "1",
        "execute": {"shell": "sh", "script": "true", "timeout": "5s"},
    }
    assert (await backend.client.post("/api/jobs", json=job)).status_code == 201
    for _ in range(3):
        r = await backend.client.post("/api/exec/hello", json={"target": {"pcs": ["pc1"]}})
        assert r.status_code == 201
    page = (await backend.client.get("/api/executions", params={"limit": 2})).json()
    assert set(page) == {"items", "total", "limit", "offset"} and page["total"] == 3
    assert len(page["items"]) == 2
    mine = (
        await backend.client.get(
            "/api/executions", params={"initiated_by": "anonymous", "status": "pending"}
        )
    ).json()
    assert mine["total"] == 3
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert (await backend.client.get("/api/executions", params={"since": later})).json()[
        "total"
    ] == 0
    res = (await backend.client.get("/api/results", params={"state": "reaped"})).json()
    assert set(res) == {"items", "total", "limit", "offset"}


async def test_metrics_show_lag_statuses_and_reaping(backend: InProcessBackend) -> None:
    text = (await backend.client.get("/metrics")).text
    for name in (
        'kanade_projector_lag_messages{consumer="projector-results"} 0.0',
        'kanade_projector_lag_messages{consumer="projector-audit"}',
        'kanade_stream_last_seq{stream="KANADE_RESULTS"}',
        'kanade_executions{status="pending"}',
        'kanade_agents{status="alive"}',
        "kanade_reaped_results_total 0.0",
        "kanade_expired_execs_total 0.0",
    ):
        assert name in text, name
