"""Notifications with real processes (docs/notifications.md): ``kanade-backend`` on a secured
broker, real agents running a failing script, a real HTTP receiver, and the ``kanade``
CLI.

* ``kanade notify`` adds, shows, tests, changes and removes webhooks; a bad field is refused
  by name; no output ever holds the secret;
* deliveries still pending when the backend is killed (-9) are delivered by the next
  backend, each exactly once (the receiver sees every idempotency key accepted once), and
  none is lost — while a failing exec and a halted rollout of real agents are detected.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import AgentFleet, eventually
from rollout_stack import BIN, Backend, Stack, alive, job

from stack import secret_file
from webhook_receiver import Receiver, receiving

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

SECRET = "process-test-" + "k" * 24
FAST = ("--notify-scan", "0.2", "--notify-retry", "0.3s", "--notify-retry-max", "1s",
        "--notify-attempts", "100")  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from receiving()


def kanade(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kanade"), *args, "--url", url],
        capture_output=True, text=True, timeout=60, check=False, input=stdin,
        env={**os.environ, "KANADE_TOKEN": ""},
    )  # fmt: skip


def test_the_cli_manages_webhooks_and_never_prints_a_secret(
    stack: Stack, receiver: Receiver, tmp_path: Path
) -> None:
    b = stack.backend(*FAST)
    key = secret_file(tmp_path / "hmac.key", SECRET)
    out = kanade(b.url, "notify", "add", "ops", "--to", receiver.url, "--secret-file", str(key),
                 "--event", "exec.failed", "--event", "rollout.halted")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "ops: generic → http://127.0.0.1:" in out.stdout and "(signed)" in out.stdout
    bad = kanade(b.url, "notify", "add", "bad", "--to", "ftp://example.com/x")
    assert bad.returncode == 1 and "url: must be an absolute http://" in bad.stderr, bad.stderr

    tested = kanade(b.url, "notify", "test", "ops")
    assert tested.returncode == 0 and "delivered to ops: HTTP 200" in tested.stdout, tested
    [probe] = receiver.accepted()
    assert probe.event == "test" and probe.signed_with(SECRET)
    receiver.answer(then=500)
    failed = kanade(b.url, "notify", "test", "ops")
    assert failed.returncode == 1 and "not delivered to ops: HTTP 500" in failed.stderr

    listed = kanade(b.url, "notify", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [hook] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert hook["deliveries"] == {"pending": 0, "delivered": 1, "failed": 1}
    shown = kanade(b.url, "notify", "show", "ops")
    assert shown.returncode == 0 and "HTTP 500" in shown.stdout
    changed = kanade(b.url, "notify", "set", "ops", "--no-secret", "--offline-after", "1h")
    assert changed.returncode == 0 and "(signed)" not in changed.stdout, changed.stderr
    assert "offline after 1h" in changed.stdout
    off = kanade(b.url, "notify", "disable", "ops")
    assert "[disabled]" in off.stdout and "1 delivered, 1 failed" in off.stdout, off
    delivered = kanade(b.url, "notify", "deliveries", "--status", "delivered", "--json")
    assert [json.loads(x)["kind"] for x in delivered.stdout.splitlines()] == ["test"]
    assert kanade(b.url, "notify", "rm", "ops").returncode == 0
    gone = kanade(b.url, "notify", "rm", "ops")
    assert gone.returncode == 1 and "webhook 'ops' not found" in gone.stderr
    everything = "".join(p.stdout + p.stderr for p in (out, tested, listed, shown, changed))
    assert SECRET not in everything


def _deliveries(b: Backend) -> list[dict[str, Any]]:
    return list(b.get("/api/notify/deliveries", limit=100)["items"])


async def test_pending_deliveries_survive_a_backend_kill_and_arrive_once(
    stack: Stack, fleet: AgentFleet, receiver: Receiver
) -> None:
    first = stack.backend(*FAST)
    for pc in ("pc-1", "pc-2"):
        fleet.add(pc, heartbeat_interval=1.0)
    await eventually(lambda: alive(first, 2, "pc-"), timeout=40, what="2 agents alive")
    receiver.answer(then=503)  # the receiver is down: every attempt fails
    r = first.post("/api/notify/webhooks", {"id": "ops", "url": receiver.url, "secret": SECRET,
                                            "events": ["exec.failed", "rollout.halted"]})
    assert r.status_code == 201, r.text
    script = 'case "$KANADE_TEST_PC" in pc-1) echo boom >&2; exit 3;; esac; echo ok'
    assert first.post("/api/jobs", job("flaky", script)).status_code == 201

    def completed(exec_id: str) -> bool:
        return bool(first.get(f"/api/executions/{exec_id}", results="false")["status"]
                    == "completed")  # fmt: skip

    plain = first.post_ok("/api/exec/flaky", {"target": {"all": True}})
    await eventually(lambda: completed(plain["exec_id"]), what="the failing exec completed")
    waves = {"waves": [{"pcs": ["pc-1"]}, {"pcs": ["pc-2"], "delay": "0s"}],
             "halt_on_failure_rate": 0.2}  # fmt: skip
    rolled = first.post_ok("/api/exec/flaky", {"target": {"all": True}, "rollout": waves})

    def halted() -> bool:
        return bool(first.get(f"/api/rollouts/{rolled['rollout_id']}")["status"] == "halted")

    await eventually(halted, what="the rollout halted")

    def tried() -> set[str] | None:
        pending = [d for d in _deliveries(first) if d["status"] == "pending"]
        seen = {x.key for x in receiver.requests}
        kinds = {d["kind"] for d in pending if d["delivery_id"] in seen}
        return seen if kinds == {"exec.failed", "rollout.halted"} else None

    seen = await eventually(tried, timeout=30, what="both kinds tried and failing")
    assert receiver.accepted() == []
    first.kill9()  # mid-retry: every delivery still pending, some maybe claimed

    receiver.answer(then=200)
    second = stack.backend(*FAST)

    def delivered() -> set[str] | None:
        keys = {x.key for x in receiver.accepted()}
        return keys if keys >= seen else None

    await eventually(delivered, timeout=40, what="every pending delivery delivered")
    # A sentinel after them: the new backend has meanwhile read the same facts again
    # (its lookback); none may be delivered twice.
    sentinel = second.post_ok("/api/exec/flaky", {"target": {"pcs": ["pc-1"]}})

    def sentinel_in() -> bool:
        return any(
            sentinel["exec_id"] in json.dumps(x.doc) for x in receiver.accepted()
        )

    await eventually(sentinel_in, timeout=30, what="the sentinel's failure delivered")
    accepted = Counter(x.key for x in receiver.accepted())
    assert set(accepted.values()) == {1}, accepted  # none twice
    assert set(accepted) >= seen  # none lost
    assert all(x.signed_with(SECRET) for x in receiver.accepted())
    kinds = Counter(x.event for x in receiver.accepted())
    assert kinds["rollout.halted"] == 1 and kinds["exec.failed"] >= 2, kinds

    def recorded() -> bool:  # the receiver answers before the backend writes the outcome
        statuses = {d["delivery_id"]: d["status"] for d in _deliveries(second)}
        return all(statuses.get(k) == "delivered" for k in accepted)

    await eventually(recorded, what="every accepted delivery recorded as delivered")
