"""The scale-out topology as real processes on loopback (SPEC §9): a secured 3-node NATS
cluster (tests/clusterkit.py), one PostgreSQL database, ``kanade-backend`` replicas on it
(every node's URL; the session's signing keys, tests/trust.py) and simulated agents (``kanade-agent
swarm``: many identities in one process through the agent's own intake/ledger/outbox
code, the script step an instant stub) given every node's URL too.

Every wait polls a condition until a deadline; every process is stopped by :meth:`close`.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from clusterkit import secured_cluster
from kanade.bus.broker import free_port
from kanade.bus.cluster import BrokerCluster
from kanade.security.authority import Authority
from pgdb import db_env
from secured import swarm_credentials
from stack import kill9, terminate

BIN = Path(sys.executable).parent
DEADLINE_S = 60.0


class StackTimeout(AssertionError):
    """A condition the stack waited for did not come true in time."""


def wait_for(check: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    give_up = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            got = check()
            if got:
                return got
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        if time.monotonic() >= give_up:
            why = f" ({last!r})" if last else ""
            raise StackTimeout(f"not within {timeout:.0f}s: {what}{why}")
        time.sleep(0.05)


@dataclass
class Replica:
    """One ``kanade-backend run`` process (restartable on the same port)."""

    name: str
    argv: list[str]
    port: int
    log: Path
    db_url: str = ""  # handed over in $KANADE_DB: it holds PostgreSQL's password
    proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        fh = open(self.log, "a")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(self.argv, stdout=fh, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True, env=db_env(self.db_url))  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None:
            kill9(self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)

    def get(self, path: str, **params: Any) -> Any:
        with httpx.Client(base_url=self.url, timeout=10.0) as h:
            r = h.get(path, params=params)
            r.raise_for_status()
            return r.json()

    def get_text(self, path: str) -> str:
        with httpx.Client(base_url=self.url, timeout=10.0) as h:
            r = h.get(path)
            r.raise_for_status()
            return r.text

    def post(self, path: str, body: Any = None) -> httpx.Response:
        with httpx.Client(base_url=self.url, timeout=30.0) as h:
            return h.post(path, json=body)

    def leads(self) -> list[str]:
        try:
            return list(self.get("/health").get("leads") or [])
        except httpx.HTTPError:
            return []

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise StackTimeout(f"{self.name} exited:\n{self.log.read_text()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            return bool(self.get("/health").get("status") == "ok")
        return False


@dataclass
class EventStream:
    """``GET /api/events`` of one replica read on a thread: the topics it was told."""

    url: str
    topics: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> EventStream:
        self._thread = threading.Thread(target=self._read, daemon=True, name="sse-reader")
        self._thread.start()
        wait_for(lambda: "hello" in self.topics, f"the event stream of {self.url}", 15)
        return self

    def _read(self) -> None:
        with (
            contextlib.suppress(Exception),
            httpx.Client(timeout=None) as h,
            h.stream("GET", f"{self.url}/api/events") as resp,
        ):
            for line in resp.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("data:"):
                    self.topics.append(json.loads(line[5:])["topic"])

    def close(self) -> None:
        self._stop.set()


class ClusterStack:
    def __init__(self, base: Path, authority: Authority, db_url: str, *, lease_ttl: float = 2.0):
        self.base = base
        self.authority = authority
        self.db_url = db_url
        self.lease_ttl = lease_ttl
        self.brokers: BrokerCluster = secured_cluster(base / "nats", authority)
        self.brokers.start(timeout=30)
        self.replicas: list[Replica] = []
        self.others: list[subprocess.Popen[str]] = []

    @property
    def nats_urls(self) -> str:
        return ",".join(self.brokers.urls)

    def replica(self, *args: str) -> Replica:
        """Start one more backend replica and wait until it is healthy. One at a time: two
        replicas setting up a fresh cluster at once time out on each other's streams whose
        leaders are still being elected (``broker setup failed; retrying``), which costs
        more than it saves."""
        port = free_port()
        name = f"replica-{len(self.replicas) + 1}"
        argv = [
            str(BIN / "kanade-backend"), "run",
            "--nats-url", self.nats_urls,
            "--authority", str(self.authority.root),
            "--http-port", str(port),
            "--lease-ttl", str(self.lease_ttl),
            "--reaper-interval", "1",
            *args,
        ]  # fmt: skip
        r = Replica(name, argv, port, self.base / f"{name}.log", self.db_url)
        self.replicas.append(r)
        r.start()
        wait_for(r.healthy, f"{name} healthy")
        return r

    def restart(self, r: Replica, *, wait: bool = True) -> None:
        """Start ``r`` again; ``wait=False`` leaves waiting for it to :meth:`all_healthy`
        (a test restarts what it killed and the next one waits, overlapping the start-up
        with its own set-up)."""
        r.start()
        if wait:
            wait_for(r.healthy, f"{r.name} healthy again")

    def all_healthy(self) -> None:
        """Every replica healthy (one a test left restarting too); one that exited fails
        the wait at once with its log (:meth:`Replica.healthy`)."""
        for r in self.replicas:
            wait_for(r.healthy, f"{r.name} healthy")

    def leader(self, role: str) -> Replica:
        """The one live replica leading ``role`` ("scheduler" or "deciders")."""

        def one() -> Replica | None:
            leading = [r for r in self.replicas if r.alive() and role in r.leads()]
            return leading[0] if len(leading) == 1 else None

        found: Replica = wait_for(one, f"exactly one replica leading {role}")
        return found

    def swarm(self, n: int, *, prefix: str = "sim-", heartbeat_s: float = 2.0) -> None:
        log = self.base / f"swarm-{prefix}log"
        creds = swarm_credentials(self.authority, self.base / f"swarm-trust-{prefix}")
        fh = open(log, "w")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [
                str(BIN / "kanade-agent"), "swarm",
                "--agents", str(n), "--prefix", prefix, "--exec", "stub",
                "--nats-url", self.nats_urls,
                "--data-dir", str(self.base / f"swarm-{prefix}"),
                "--creds", str(creds.creds_file), "--ca", str(creds.ca_file),
                "--heartbeat-interval", str(heartbeat_s),
            ],
            stdout=fh, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        self.others.append(proc)
        wait_for(lambda: "swarm ready" in log.read_text(), f"swarm {prefix} ready", 120)

    def alive_agents(self, via: Replica) -> int:
        return int(via.get("/api/agents", status="alive", limit=1)["total"])

    def close(self) -> None:
        for p in self.others:
            with contextlib.suppress(Exception):
                terminate(p)
        for r in self.replicas:
            with contextlib.suppress(Exception):
                r.stop()
        self.brokers.stop()


@contextlib.contextmanager
def cluster_stack(
    base: Path, authority: Authority, db_url: str, **kw: Any
) -> Iterator[ClusterStack]:
    s = ClusterStack(base, authority, db_url, **kw)
    try:
        yield s
    finally:
        s.close()
