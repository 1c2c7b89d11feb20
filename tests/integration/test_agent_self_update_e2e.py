"""Self-update end to end (SPEC §3.8, issue #17 "done when"): three real single-file agent
releases — A (0.9.1), B (0.9.2) and a broken C (0.9.3) — built with `kanade agent build`'s
builder and published with `kanade agent publish`. A real agent process started from A under
a supervisor (what systemd's Restart=always does: restart whatever exits) is told B by
`kanade agent rollout`, updates itself to B (same pid: exec), is then told C, whose check
fails three times, stays on B and reports C quarantined in its heartbeat, the API and
`kanade agent current`. It answers pings throughout, and a command sent while it updates
runs exactly once. Prints the timeline as one JSON line."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_enrolment_e2e import Backend, agent_cli, backend  # noqa: F401 - the fixture

from kanade.cli.zipapp import build
from polling import wait_until
from stack import terminate

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = [pytest.mark.stores, pytest.mark.slow]

PC = "upd-1"
A, B, C = "0.9.1", "0.9.2", "0.9.3"


def _break(lib: Path) -> None:
    """C cannot start: its runtime does not import."""
    runtime = lib / "kanade" / "agent" / "runtime.py"
    runtime.write_text(runtime.read_text() + "\nraise RuntimeError('release C is broken')\n")


class Supervisor:
    """Restarts the agent whenever it exits, like a service manager."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()
        wait_until(lambda: self.proc is not None, "agent started", timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with open(self.log, "ab") as fh:
                self.proc = subprocess.Popen(self.argv, env=self.env, stdout=fh,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            self.starts += 1
            while self.proc.poll() is None and not self._stop.is_set():
                time.sleep(0.1)
            time.sleep(1.0)

    def stop(self) -> None:
        self._stop.set()
        if self.proc is not None:
            terminate(self.proc)
        self._thread.join(timeout=30)


def test_an_agent_updates_itself_then_quarantines_a_broken_release(
    backend: Backend,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    t0 = time.monotonic()
    timeline: dict[str, float] = {}

    def mark(event: str) -> None:
        timeline[event] = round(time.monotonic() - t0, 1)

    releases = tmp_path / "releases"
    built = {
        A: build(releases / "a" / "kanade-agent.pyz", version=A),
        B: build(releases / "b" / "kanade-agent.pyz", version=B),
        C: build(releases / "c" / "kanade-agent.pyz", version=C, patch=_break),
    }
    mark("built A, B, C")
    for version in (B, C):
        done = backend.kanade("agent", "publish", str(built[version].path), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["sha256"] == built[version].sha256
    again = backend.kanade("agent", "publish", str(built[B].path))
    assert again.returncode == 0 and "already published" in again.stdout
    mark("published B, C")

    token = json.loads(backend.kanade("agent", "enroll-token", "--json").stdout)["token"]
    data, config = tmp_path / "agent-data", tmp_path / "agent.yaml"
    config.write_text("heartbeat_interval: 1\n")
    enrolled = agent_cli("enroll", backend.url, "-", "--pc-id", PC, "--data-dir", str(data),
                         "--config", str(config), stdin=token + "\n")
    assert enrolled.returncode == 0, enrolled.stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KANADE_"))}
    env["KANADE_AGENT_UNPACK_DIR"] = str(tmp_path / "unpack")
    log = tmp_path / "agent.log"
    supervisor = Supervisor([sys.executable, str(built[A].path), "run", "--config",
                             str(config)], env, log)
    http = httpx.Client(base_url=backend.url, timeout=10)

    def agent() -> dict[str, Any]:
        res = http.get(f"/api/agents/{PC}")
        return res.json() if res.status_code == 200 else {}

    pings: list[tuple[float, bool]] = []
    stop_pinging = threading.Event()

    def pinger() -> None:
        while not stop_pinging.is_set():
            try:
                ok = http.post(f"/api/agents/{PC}/ping", timeout=5).status_code == 200
            except httpx.HTTPError:
                ok = False
            pings.append((time.monotonic(), ok))
            stop_pinging.wait(0.5)

    supervisor.start()
    try:
        wait_until(lambda: agent().get("agent_version") == A, "agent A heartbeats",
                   timeout=60, diagnostics=log.read_text)
        mark("A up")
        pid = supervisor.proc.pid if supervisor.proc else None
        ping_thread = threading.Thread(target=pinger, daemon=True)
        ping_thread.start()
        wait_until(lambda: any(ok for _, ok in pings), "A answers pings", timeout=20)

        out = tmp_path / "ran-once.txt"
        rolled = backend.kanade("agent", "rollout", B, "--pc", PC)
        assert rolled.returncode == 0, rolled.stderr
        mark("rollout B")
        # A command sent while the agent updates: run exactly once, by A or by B.
        ran = backend.kanade("run", "--pc", PC, "--json", "--timeout", "30s", "--",
                             f"echo once >> {out}")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        results = [json.loads(line) for line in ran.stdout.splitlines()]
        assert [r["pc_id"] for r in results] == [PC]
        wait_until(lambda: agent().get("agent_version") == B, "the agent runs B",
                   timeout=120, diagnostics=log.read_text)
        mark("B up")
        assert supervisor.starts == 1, "updated in place: the supervisor restarted nothing"
        assert supervisor.proc is not None and supervisor.proc.pid == pid
        state = json.loads((data / "releases" / "state.json").read_text())
        wait_until(lambda: json.loads((data / "releases" / "state.json").read_text())
                   ["confirmed"], "B confirmed itself", timeout=30)
        assert state["current"] == B and state["previous"] == A

        rolled = backend.kanade("agent", "rollout", C, "--pc", PC)
        assert rolled.returncode == 0, rolled.stderr
        mark("rollout C")

        def quarantined() -> bool:
            update = agent().get("agent_update") or {}
            return update.get("state") == "quarantined" and C in update.get("quarantined", [])

        wait_until(quarantined, "C reported quarantined", timeout=120, diagnostics=log.read_text)
        mark("C quarantined")
        assert agent()["agent_version"] == B
        assert supervisor.starts == 1 and supervisor.proc.pid == pid
        current = backend.kanade("agent", "current", "--json")
        fleet = json.loads(current.stdout)
        assert fleet["versions"] == [{"version": B, "count": 1}]
        assert fleet["quarantined"][0]["pc_id"] == PC
        assert fleet["quarantined"][0]["versions"] == [C]
        assert "failed its start-and-connect check 3 times" in fleet["quarantined"][0]["error"]
        assert fleet["targets"] == {f"pc.{PC}": C}
        human = backend.kanade("agent", "current")
        assert f"quarantined on {PC} (running {B}): {C}" in human.stdout

        # Reachable throughout: no stretch without an answered ping longer than the switch.
        stop_pinging.set()
        ping_thread.join(timeout=10)
        answered = [at for at, ok in pings if ok]
        gaps = [round(b - a, 1) for a, b in itertools.pairwise(answered)]
        assert max(gaps) < 15, gaps
        assert out.read_text() == "once\n"
        print(json.dumps({"test": "agent self-update", "timeline_s": timeline,
                          "longest_unanswered_ping_gap_s": max(gaps),
                          "pings": len(pings), "answered": len(answered),
                          "artefact_bytes": built[B].size}))
    finally:
        stop_pinging.set()
        supervisor.stop()
        http.close()
