"""Real processes for the rollout / approval / local-concurrency suites.

* a nats-server (``EmbeddedBroker``) that outlives backend restarts;
* ``kanade-backend run`` processes on one SQLite file, killable with SIGKILL and
  restartable (each start gets a fresh port);
* agents: a stub swarm (``kanade-agent swarm``) or real ``kanade-agent run`` processes
  through :class:`agent_harness.AgentFleet` (every script sees ``$KANADE_TEST_PC``);
* :class:`CommandLog`: every message the command stream *stored*, read through a
  JetStream consumer — what agents could ever receive, so a wave sent twice shows up
  as two messages for one pc.

Every wait polls a condition until a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from kanade.bus import EmbeddedBroker, free_port
from kanade.bus.pull import PullConsumer
from kanade.core import subjects
from kanade.core.models.wire import Command, decode
from kanade.security.authority import Authority
from pgdb import db_env
from polling import eventually, wait_until
from secured import backend_credentials, swarm_credentials
from stack import kill9, secret_file, terminate

BIN = Path(sys.executable).parent
DEADLINE = 30.0
# A backend start is bounded like every stack's (tests/stack.py): on a loaded 2-core CI
# machine its broker set-up (topology, consumers) is retried with backoff and can take more
# than DEADLINE; this catches a hang, not a slow machine.
START_DEADLINE = 60.0
JWT_SECRET = "rollout-test-secret-" + "x" * 32
PASSWORD = "pass-word-123"


def wait_for(check: Callable[[], Any], *, timeout: float = DEADLINE, what: str = "") -> Any:
    """Poll a stack condition; HTTP errors and missing keys mean "not yet"."""
    return wait_until(check, what, timeout=timeout,
                      tolerate=(httpx.HTTPError, KeyError, IndexError))


@dataclass
class Backend:
    proc: subprocess.Popen[str]
    url: str
    log: Path
    token: str | None = None

    def client(self, token: str | None = None) -> httpx.Client:
        tok = token or self.token
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        return httpx.Client(base_url=self.url, timeout=15.0, headers=headers)

    def get(self, path: str, token: str | None = None, **params: Any) -> Any:
        with self.client(token) as h:
            r = h.get(path, params=params)
            r.raise_for_status()
            return r.json()

    def post(self, path: str, body: Any = None, token: str | None = None) -> httpx.Response:
        with self.client(token) as h:
            return h.post(path, json=body)

    def post_ok(self, path: str, body: Any = None, token: str | None = None) -> Any:
        r = self.post(path, body, token)
        assert r.status_code < 300, f"POST {path}: {r.status_code} {r.text}"
        return r.json()

    def kill9(self) -> None:
        kill9(self.proc)

    def stop(self) -> None:
        terminate(self.proc)

    def login(self, username: str, password: str = PASSWORD) -> str:
        r = self.post("/api/auth/login", {"username": username, "password": password})
        assert r.status_code == 200, r.text
        return str(r.json()["token"])


@dataclass
class Stack:
    base: Path
    authority: Authority
    db: str = ""  # a database URL or SQLite path; default: kanade.db in base
    broker: EmbeddedBroker = field(init=False)
    backends: list[Backend] = field(default_factory=list)
    others: list[subprocess.Popen[str]] = field(default_factory=list)
    # Who add_user stored (name -> role): a stack shared by a module's tests adds each once.
    users: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.broker = EmbeddedBroker(self.base / "nats", security=self.authority.broker_security())
        self.broker.start(timeout=15)
        self.db = self.db or str(self.base / "kanade.db")

    def nats_options(self) -> dict[str, Any]:
        """``nats.connect`` options for a test driver (the backend's identity)."""
        return backend_credentials(self.authority).connect_options()

    def add_user(self, name: str, role: str) -> None:
        """Store a user with ``PASSWORD`` (``kanade-backend user add``); a no-op when this
        stack already stored that user with that role."""
        if self.users.get(name) == role:
            return
        r = subprocess.run(
            [str(BIN / "kanade-backend"), "user", "add", name, "--role", role,
             "--password-stdin"],
            input=PASSWORD + "\n", capture_output=True, text=True, timeout=60, check=False,
            env=db_env(self.db),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        self.users[name] = role

    def backend(self, *args: str, jwt: bool = False) -> Backend:
        port = free_port()
        log = self.base / f"backend-{len(self.backends)}.log"
        fh = open(log, "w")  # noqa: SIM115 - handed to the child
        argv = [
            str(BIN / "kanade-backend"),
            "run",
            "--nats-url",
            self.broker.url,
            "--authority",
            str(self.authority.root),
            "--http-port",
            str(port),
            "--lease-ttl",
            "2",
            *args,
        ]
        if jwt:
            argv += ["--auth", "jwt", "--jwt-secret-file",
                     str(secret_file(self.base / "jwt-secret", JWT_SECRET))]
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, env=db_env(self.db))  # fmt: skip
        b = Backend(proc, f"http://127.0.0.1:{port}", log)
        self.backends.append(b)

        def healthy() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"backend exited early:\n{log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                return bool(b.get("/health").get("broker"))
            return False

        wait_until(healthy, "backend healthy", timeout=START_DEADLINE,
                   diagnostics=lambda: log.read_text()[-3000:])  # fmt: skip
        return b

    def swarm(
        self, n: int, *, prefix: str = "sim-", groups: int = 0, exec_mode: str = "stub"
    ) -> None:
        log = self.base / f"swarm-{prefix}.log"
        creds = swarm_credentials(self.authority, self.base / f"swarm-{prefix}-trust")
        fh = open(log, "w")  # noqa: SIM115 - handed to the child
        argv = [
            str(BIN / "kanade-agent"),
            "swarm",
            "--agents",
            str(n),
            "--prefix",
            prefix,
            "--exec",
            exec_mode,
            "--nats-url",
            self.broker.url,
            "--data-dir",
            str(self.base / f"swarm-{prefix}"),
            "--creds",
            str(creds.creds_file),
            "--ca",
            str(creds.ca_file),
            "--heartbeat-interval",
            "1",
        ]
        if groups:
            argv += ["--groups", str(groups)]
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)  # fmt: skip
        self.others.append(proc)
        wait_for(lambda: "swarm ready" in log.read_text(), what="swarm ready")

    def for_one_test(self) -> Iterator[Stack]:
        """This stack for one test of a module sharing it; the backends the test started
        are stopped after it (the broker, the database and its users stay)."""
        started = len(self.backends)
        try:
            yield self
        finally:
            for b in self.backends[started:]:
                b.stop()
            del self.backends[started:]

    def close(self) -> None:
        for p in self.others:
            terminate(p)
        for b in self.backends:
            b.stop()
        self.broker.stop()


def alive(b: Backend, n: int, prefix: str = "") -> bool:
    items = b.get("/api/agents", status="alive", limit=1000)["items"]
    return len([a for a in items if a["pc_id"].startswith(prefix)]) >= n


def job(job_id: str, script: str, *, version: str = "1", **extra: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "version": version,
        "execute": {"shell": "sh", "script": script, "timeout": "30s"},
        **extra,
    }


class CommandLog:
    """Every message stored in KANADE_COMMANDS from now on, as (subject, Command).

    A consumer of its own on the test's event loop: it lags the API. A test blocked in a
    synchronous HTTP poll can see a rollout complete before this log ran once since the
    wave went out, so a count is read after :meth:`caught_up`. A message redelivered to the
    log (its ack lost while the test's loop was blocked) is kept once: by stream sequence.
    """

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.name = f"test-cmdlog-{uuid.uuid4().hex[:10]}"
        self.items: list[tuple[str, int, Command]] = []
        self._sequences: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._consumer: PullConsumer | None = None

    async def start(self) -> CommandLog:
        await self.js.add_consumer(
            subjects.STREAM_COMMANDS,
            ConsumerConfig(
                name=self.name,
                durable_name=self.name,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.NEW,
                ack_wait=30.0,
                inactive_threshold=600.0,
            ),
        )
        self._consumer = PullConsumer(
            self.nc, subjects.STREAM_COMMANDS, self.name, window=256, idle_heartbeat=1.0
        )

        async def run() -> None:
            assert self._consumer is not None
            async for msg in self._consumer.messages():
                with contextlib.suppress(Exception):
                    await msg.ack()
                seq = msg.metadata.sequence.stream
                if seq in self._sequences:
                    continue  # a redelivery of what the log already holds
                with contextlib.suppress(ValueError):
                    self.items.append((msg.subject, seq, decode(Command, msg.data)))
                    self._sequences.add(seq)

        self._task = asyncio.create_task(run())
        return self

    def for_exec(self, exec_id: str) -> list[tuple[str, Command]]:
        return [(s, c) for s, _, c in self.items if c.exec_id == exec_id]

    def per_pc(self, exec_id: str) -> Counter[str]:
        """How many commands of ``exec_id`` the stream stored per pc subject."""
        return Counter(s.rsplit(".", 2)[-2] for s, _ in self.for_exec(exec_id))

    async def caught_up(self, exec_id: str, pcs: Iterable[str]) -> Counter[str]:
        """Wait until the log holds a command of ``exec_id`` for every pc of ``pcs`` (the
        API already says they ran); then :meth:`per_pc`, for an exact comparison."""
        want = set(pcs)
        await eventually(lambda: want <= set(self.per_pc(exec_id)),
                         f"the command log holds {exec_id} for {sorted(want)}",
                         timeout=DEADLINE)  # fmt: skip
        return self.per_pc(exec_id)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.close()
        with contextlib.suppress(Exception):
            await self.js.delete_consumer(subjects.STREAM_COMMANDS, self.name)
