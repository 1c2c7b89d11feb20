"""Operator state survives a wiped database (SPEC §1.3), in-process against a real broker:
users, an approval request, an unattended-run approval, enrolment tokens, a rollout waiting
for its next wave, a schedule's counters and decisions, a notification webhook (with its
secret) all come back row for row from KV
``kanade_state`` (agents cannot read that bucket: test_security_attacks.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from test_backend_projection import HELLO, eventually, settings_for
from wipe_tables import differences, dump, wipe

from kanade.backend.inprocess import InProcessBackend, in_process_backend
from kanade.backend.store import scheduling
from kanade.backend.store.scheduling import DecisionRow
from kanade.bus import Bus

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

GATED = {**HELLO, "id": "gated", "require_approval": True}
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _written(b: InProcessBackend) -> bool:
    """Nothing waits to be written to KV kanade_state (``/metrics``; a backend without that
    gauge has nothing to write)."""
    text = (await b.client.get("/metrics")).text
    m = re.search(r"^kanade_state_backlog (\S+)$", text, re.M)
    return m is None or float(m.group(1)) == 0.0


async def _write_operator_state(b: InProcessBackend) -> dict[str, str]:
    c = b.client
    r = await c.post(
        "/api/users",
        json={"username": "alice@example.org", "password": "pw-0123456789", "role": "operator"},
    )
    assert r.status_code == 201, r.text
    for doc in (HELLO, GATED):
        assert (await c.post("/api/jobs", json=doc)).status_code in (200, 201)
    # force: the ghost pcs never report
    waiting = (
        await c.post("/api/exec/gated?force=true", json={"target": {"pcs": ["ghost-0"]}})
    ).json()
    assert waiting["status"] == "awaiting_approval"
    r = await c.post("/api/jobs/gated/versions/1/approve-unattended")
    assert r.status_code == 201, r.text
    for _ in range(2):  # enrolment tokens: one stays open, one is cancelled
        r = await c.post("/api/agents/enroll-tokens", json={"groups": ["web"]})
        assert r.status_code == 200, r.text
    r = await c.delete(f"/api/agents/enroll-tokens/{r.json()['token_id']}")
    assert r.status_code == 200, r.text
    r = await c.post("/api/notify/webhooks", json={  # secret and URL come back too
        "id": "ops", "url": "https://alerts.example/hook", "secret": "k" * 32,
        "events": ["exec.failed"], "offline_after": "1h",
    })  # fmt: skip
    assert r.status_code == 201, r.text
    waves = {"waves": [{"pcs": ["ghost-1"]}, {"pcs": ["ghost-2"], "delay": "1h"}]}
    rollout = (
        await c.post("/api/exec/hello?force=true", json={"target": {"pcs": ["ghost-1", "ghost-2"]},
                                              "rollout": waves})
    ).json()  # fmt: skip
    decisions = [
        DecisionRow("nightly", "nightly@1", T0, "fired", None, "dispatched", exec_id="x1",
                    pcs=2, lateness_s=0.01, decided_at=T0),
        DecisionRow("nightly", "nightly@2", T0 + timedelta(days=1), "skipped", "frozen",
                    "the fleet is frozen", decided_at=T0 + timedelta(days=1)),
        DecisionRow("nightly", "nightly@3", T0 + timedelta(days=3), "missed", "catchup_skip",
                    "2 occurrence(s)", count=2, decided_at=T0 + timedelta(days=3)),
    ]  # fmt: skip
    await b.services.db.write(lambda conn: scheduling.record_decisions(conn, decisions, T0))

    async def wave_zero_out() -> bool:
        got = (await c.get(f"/api/rollouts/{rollout['rollout_id']}")).json()
        return bool(got["waves"][0]["state"] == "dispatched")

    await eventually(wave_zero_out, what="wave 0 dispatched")

    await eventually(lambda: _written(b), what="operator state written to the broker")
    return {"waiting": waiting["exec_id"], "rollout": rollout["rollout_id"]}


async def test_operator_state_comes_back_row_for_row(
    nats_url: str, bus: Bus, store_url: str
) -> None:
    db_file = store_url
    async with in_process_backend(settings_for(nats_url, db_file)) as first:
        ids = await _write_operator_state(first)
    before = dump(db_file)
    assert before["users"] and before["approvals"] and before["rollout_waves"]
    assert len(before.get("enroll_tokens", [])) == 2
    assert [w["secret"] for w in before["webhooks"]] == ["k" * 32]
    wipe(db_file)

    async with in_process_backend(settings_for(nats_url, db_file)) as second:
        c = second.client

        async def rebuilt() -> bool:
            r = await c.get(f"/api/rollouts/{ids['rollout']}")
            a = await c.get(f"/api/approvals/{ids['waiting']}")
            return r.status_code == 200 and a.status_code == 200

        await eventually(rebuilt, what="rollout and approval back")
        stats = (await c.get("/api/schedules")).status_code  # the API still answers
        assert stats == 200
        rollout = (await c.get(f"/api/rollouts/{ids['rollout']}")).json()
        assert [w["state"] for w in rollout["waves"]] == ["dispatched", "waiting"]

        async def same() -> bool:
            return not differences(before, dump(db_file))

        try:
            await eventually(same, what="every operator-state row equal to before")
        except BaseException:
            pytest.fail("\n".join(differences(before, dump(db_file))))
