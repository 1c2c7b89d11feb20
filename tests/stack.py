"""Real kanade stacks for browser tests and benchmarks (processes on loopback).

* :func:`start_up` / :func:`stop_up` — ``kanade up`` exactly as an operator runs it
  (broker + backend + N agents + example jobs), the pattern of ``test_e2e_up.py``;
* :func:`start_backend` / :func:`stop_backend` — a broker and a lone
  ``kanade-backend`` process with extra arguments (e.g. ``--auth jwt``), for tests
  that need a setting ``kanade up`` does not expose.

Everything is bounded in time; a stack that cannot start fails with its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from kanade.bus.broker import EmbeddedBroker, free_port
from kanade.security.authority import Authority
from pgdb import db_env
from secured import issue_agent, register_groups, session_authority

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 60.0


class StackError(RuntimeError):
    """The stack did not come up (the message carries its log)."""


@dataclass
class UpStack:
    proc: subprocess.Popen[str]
    url: str
    data_dir: Path
    log: Path
    ready_s: float
    nats_url: str = ""

    def kanade(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KANADE_URL": self.url}
        return subprocess.run(
            [str(BIN / "kanade"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )


def start_up(
    data_dir: Path,
    log: Path,
    agents: int = 3,
    *,
    examples: bool = True,
    extra: tuple[str, ...] = (),
    cwd: Path = REPO,
) -> UpStack:
    """``kanade up`` on free ports; returns once it printed "kanade is up". ``examples``
    loads the checkout's example jobs by path; without it ``kanade up`` loads the ones
    shipped in the package."""
    http_port, nats_port = free_port(), free_port()
    t0 = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log, "w")  # noqa: SIM115 - handed to the child, closed by the OS at exit
    argv = [
        str(BIN / "kanade"),
        "up",
        "--agents",
        str(agents),
        "--http-port",
        str(http_port),
        "--nats-port",
        str(nats_port),
        "--data-dir",
        str(data_dir),
    ]
    if examples:
        argv += ["--examples", str(REPO / "examples" / "jobs")]
    argv += list(extra)
    proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, text=True, cwd=cwd)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log.read_text()
        if "kanade is up" in text:
            return UpStack(
                proc,
                f"http://127.0.0.1:{http_port}",
                data_dir,
                log,
                time.monotonic() - t0,
                nats_url=f"nats://127.0.0.1:{nats_port}",
            )
        if proc.poll() is not None:
            raise StackError(f"kanade up exited early:\n{text}")
        time.sleep(0.05)
    proc.kill()
    raise StackError(f"kanade up not ready in {READY_TIMEOUT_S:.0f}s:\n{log.read_text()}")


def stop_up(stack: UpStack) -> list[int]:
    """Ctrl-C the supervisor (it stops agents, backend and broker); kill on a hang.

    Returns the pids the supervisor had started, so a test can check they are gone."""
    if stack.proc.poll() is not None:
        return []
    children = [c.pid for c in psutil.Process(stack.proc.pid).children(recursive=True)]
    stack.proc.send_signal(signal.SIGINT)
    try:
        stack.proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        stack.proc.kill()
        for pid in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        raise
    return children


@dataclass
class BackendStack:
    broker: EmbeddedBroker
    proc: subprocess.Popen[str]
    url: str
    log: Path
    authority: Authority
    agents: list[subprocess.Popen[str]] = field(default_factory=list)

    def start_agent(self, pc_id: str, *groups: str) -> None:
        """One real ``kanade-agent`` connected to this stack's broker (stopped with it)."""
        base = self.log.parent / "agents" / pc_id
        base.mkdir(parents=True, exist_ok=True)
        fh = open(base / "agent.log", "w")  # noqa: SIM115 - handed to the child
        # Its own identity, and its groups in KV (where the backend provisions from).
        issue_agent(self.authority, pc_id, base)
        register_groups(self.broker.url, self.authority, pc_id, groups)
        argv = [str(BIN / "kanade-agent"), "run", "--pc-id", pc_id, "--nats-url", self.broker.url]
        for g in groups:
            argv += ["--group", g]
        argv += ["--data-dir", str(base), "--heartbeat-interval", "5"]
        self.agents.append(
            subprocess.Popen(
                argv, stdout=fh, stderr=subprocess.STDOUT, text=True, start_new_session=True
            )
        )


def secret_file(path: Path, value: str) -> Path:
    """A secret for ``--jwt-secret-file``/``--auth-token-file``, owner-only: secrets never
    go on a command line (every local user can read /proc/<pid>/cmdline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return path


def start_backend(
    base: Path, *backend_args: str, authority: Path | None = None, db: str = ""
) -> BackendStack:
    """A broker and one ``kanade-backend run`` with ``backend_args`` on ``db`` (a database
    URL; default: SQLite under ``base``); waits for /health.

    Secured by the session's authority, or by ``authority`` (a trust dir, created if
    missing) when the test needs one of its own (enrolment, revocation)."""
    base.mkdir(parents=True, exist_ok=True)
    # The session's trust root unless the test brings its own (enrolment, revocation).
    trust = session_authority() if authority is None else Authority.create(authority)
    broker = EmbeddedBroker(base / "nats", security=trust.broker_security())
    broker.start(timeout=15)
    http_port = free_port()
    log = base / "backend.log"
    fh = open(log, "w")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            str(BIN / "kanade-backend"),
            "run",
            "--nats-url",
            broker.url,
            "--authority",
            str(trust.root),
            "--http-port",
            str(http_port),
            *backend_args,
        ],
        stdout=fh,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=db_env(db or base / "kanade.db"),
    )
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(base_url=url, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                broker.stop()
                raise StackError(f"backend exited early:\n{log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if http.get("/health").json().get("broker"):
                    return BackendStack(broker, proc, url, log, trust)
            time.sleep(0.1)
    proc.kill()
    broker.stop()
    raise StackError(f"backend not healthy in {READY_TIMEOUT_S:.0f}s:\n{log.read_text()}")


def stop_backend(stack: BackendStack) -> None:
    for agent in stack.agents:
        terminate(agent)
    terminate(stack.proc)
    stack.broker.stop()


def terminate(proc: subprocess.Popen[Any], timeout: float = 20) -> None:
    """SIGTERM, wait; SIGKILL if it does not stop in time. No-op for an exited process."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill9(proc)


def kill9(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL (a crash, for fault tests) and reap."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
