"""Support for the control-plane end-to-end tests (no tests in here).

A stack = a real nats-server (:class:`EmbeddedBroker`), a real ``kanade-backend run``
process and real ``kanade-agent`` processes (the agent harness), driven through the
``kanade`` CLI as an operator would. Unlike ``kanade up``, each agent can be stopped
and started on its own, which the "offline agent" scenarios need.

Waits poll a condition until a deadline (never a fixed sleep as synchronisation);
every process is stopped on teardown, scripts and grandchildren included.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from agent_harness import AgentFleet, AgentProcess

import polling
from kanade.bus import EmbeddedBroker, free_port
from pgdb import db_env
from secured import authority_dir, session_authority

BIN = Path(sys.executable).parent
DEADLINE = 30.0
POLL_S = 0.05


# The suites' one poll helper, with this stack's defaults and the errors that mean "not yet".
wait_until = functools.partial(
    polling.wait_until,
    timeout=DEADLINE,
    interval=POLL_S,
    tolerate=(httpx.HTTPError, KeyError, ValueError, OSError),
)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass
class ControlStack:
    root: Path
    broker: EmbeddedBroker
    url: str
    http_port: int
    fleet: AgentFleet
    backend: subprocess.Popen[bytes] | None = None
    backend_args: tuple[str, ...] = ()
    db: str = ""  # a database URL (SQLite or PostgreSQL); default: kanade.db under root

    # --- processes ------------------------------------------------------------------------
    @property
    def backend_log(self) -> Path:
        return self.root / "backend.log"

    def start_backend(self) -> None:
        argv = [
            sys.executable, "-m", "kanade.backend.cli", "run",
            "--nats-url", self.broker.url,
            "--authority", str(authority_dir()),
            "--http-port", str(self.http_port), *self.backend_args,
        ]  # fmt: skip
        with open(self.backend_log, "ab") as log:
            self.backend = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=db_env(self.db or self.root / "kanade.db"),
            )
        wait_until(
            lambda: httpx.get(f"{self.url}/health", timeout=1).json()["broker"],
            what="backend healthy",
            diagnostics=self.backend_tail,
        )

    def stop_backend(self) -> None:
        proc = self.backend
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def backend_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            text = self.backend_log.read_text(errors="replace").splitlines()[-lines:]
            return "--- backend log tail ---\n" + "\n".join(text)
        return ""

    def diagnostics(self) -> str:
        return self.backend_tail() + "\n" + self.fleet.diagnostics()

    def agent(self, pc_id: str, groups: tuple[str, ...] = (), *, start: bool = True,
              **kwargs: Any) -> AgentProcess:  # fmt: skip
        a = self.fleet.add(pc_id, groups, start=start, **kwargs)
        if start:
            self.wait_alive(pc_id)
        return a

    def start_agent(self, pc_id: str) -> AgentProcess:
        a = self.fleet[pc_id].start()
        self.wait_alive(pc_id)
        return a

    def stop_agent(self, pc_id: str) -> None:
        a = self.fleet[pc_id]
        if a.proc is None or a.proc.poll() is not None:
            return
        a.proc.send_signal(signal.SIGTERM)
        try:
            a.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            a.proc.kill()
            a.proc.wait(timeout=10)

    def wait_alive(self, pc_id: str, *, timeout: float = DEADLINE) -> dict[str, Any]:
        """Until the agent answers a ping through the backend (it is connected and
        serving), and the backend's agents table has its latest heartbeat."""
        agent = self.fleet[pc_id]

        def ready() -> dict[str, Any] | None:
            if not agent.is_running():
                raise AssertionError(f"agent {pc_id} exited\n{agent.log_tail()}")
            r = self.http().post(f"/api/agents/{pc_id}/ping", params={"timeout": 1})
            if r.status_code != 200:
                return None
            row = self.http().get(f"/api/agents/{pc_id}")
            return row.json() if row.status_code == 200 else None

        result: dict[str, Any] = wait_until(
            ready, timeout=timeout, what=f"agent {pc_id} alive", diagnostics=agent.log_tail
        )
        return result

    # --- clients ---------------------------------------------------------------------------
    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def kanade(
        self, *args: str, timeout: float = 90, binary: bool = False
    ) -> subprocess.CompletedProcess[Any]:
        env = {**os.environ, "KANADE_URL": self.url, "COLUMNS": "200"}
        return subprocess.run(
            [str(BIN / "kanade"), *args],
            capture_output=True,
            text=not binary,
            env=env,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        """Run a CLI verb that must succeed."""
        res = self.kanade(*args, timeout=timeout)
        assert res.returncode == 0, (
            f"kanade {' '.join(args)} exited {res.returncode}\nstdout: {res.stdout}\n"
            f"stderr: {res.stderr}\n{self.diagnostics()}"
        )
        return res

    # --- API helpers -------------------------------------------------------------------------
    def run_adhoc(self, pc: str, script: str, *, shell: str = "sh",
                  timeout: str = "60s") -> dict[str, Any]:  # fmt: skip
        body = {"script": script, "shell": shell, "timeout": timeout, "target": {"pcs": [pc]}}
        r = self.http().post("/api/run", json=body)
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created

    def execution(self, exec_id: str) -> dict[str, Any]:
        r = self.http().get(f"/api/executions/{exec_id}")
        assert r.status_code == 200, r.text
        ex: dict[str, Any] = r.json()
        return ex

    def result_of(self, exec_id: str, pc: str, *, timeout: float = DEADLINE) -> dict[str, Any]:
        """The finished result row of ``pc`` in ``exec_id``."""

        def done() -> dict[str, Any] | None:
            for r in self.execution(exec_id)["results"]:
                if r["pc_id"] == pc and r.get("state") == "finished":
                    return dict(r)
            return None

        result: dict[str, Any] = wait_until(
            done, timeout=timeout, what=f"result of {pc} in exec {exec_id}",
            diagnostics=self.diagnostics,
        )  # fmt: skip
        return result

    def create_job(self, yaml_text: str, path: Path) -> None:
        path.write_text(yaml_text)
        self.ok("job", "create", str(path))


def start_stack(
    root: Path, backend_args: tuple[str, ...] = (), *, db: str = ""
) -> ControlStack:
    """A broker and a backend process on ``db`` (default: SQLite under ``root``)."""
    root.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(root / "nats", security=session_authority().broker_security())
    broker.start()
    http_port = free_port()
    stack = ControlStack(
        root=root,
        broker=broker,
        url=f"http://127.0.0.1:{http_port}",
        http_port=http_port,
        fleet=AgentFleet(root / "agents", broker.url, session_authority()),
        backend_args=backend_args,
        db=db,
    )
    try:
        stack.start_backend()
    except BaseException:
        stop_stack(stack)
        raise
    return stack


def stop_stack(stack: ControlStack) -> None:
    try:
        for pc in list(stack.fleet.agents):
            with contextlib.suppress(Exception):
                stack.stop_agent(pc)
        stack.fleet.close()
    finally:
        try:
            stack.stop_backend()
        finally:
            stack.broker.stop()
