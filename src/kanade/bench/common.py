"""Shared pieces of the benchmarks: JSON-line output and real stacks on loopback."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

from kanade.bench.security import (
    SECURITY_DIR,
    SIGNING_KEYS_DIR,
    probe_credentials,
    swarm_args,
    write_swarm_trust,
)
from kanade.bus.broker import free_port
from kanade.bus.credentials import BusCredentials
from kanade.security.authority import Authority

BIN = Path(sys.executable).parent


def emit(name: str, params: Mapping[str, object], samples: Sequence[float], unit: str = "s",
         **extra: object) -> dict[str, object]:
    """Print one measurement as a JSON line (medians of several runs)."""
    line: dict[str, object] = {
        "name": name,
        "params": dict(params),
        "median": round(statistics.median(samples), 4),
        "min": round(min(samples), 4),
        "max": round(max(samples), 4),
        "runs": len(samples),
        "unit": unit,
        **extra,
    }
    print(json.dumps(line), flush=True)
    return line


def percentile(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class Proc:
    """A child process with its output in a log file, stopped with SIGINT."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._fh: IO[bytes] = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self._fh, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise SystemExit(f"{self.log.name}: {text!r} not seen in {timeout:.0f}s:\n{tail}")
            time.sleep(0.02)

    def stop(self, timeout: float = 120) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._fh.close()


def free_run(n: int) -> int:
    """The first of ``n`` consecutive free ports (``kanade up --cluster`` takes ranges)."""
    while True:
        first = free_port()
        if first + n < 65536 and all(_free(first + i) for i in range(1, n)):
            return first


def _free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Stack:
    """`kanade up --agents N` on free ports: broker + backend + N real agent processes;
    ``cluster``: `kanade up --cluster` (3 brokers, PostgreSQL, 2 backend replicas), the
    benchmark talking to the first replica and every broker (SPEC §9)."""

    def __init__(self, workdir: Path, agents: int = 0, examples: Path | None = None,
                 *, cluster: bool = False) -> None:
        self.cluster = cluster
        self.http_port = free_run(2) if cluster else free_port()
        self.nats_port = free_run(3) if cluster else free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        nodes = 3 if cluster else 1
        self.nats_urls = [f"tls://127.0.0.1:{self.nats_port + i}" for i in range(nodes)]
        self.nats_url = ",".join(self.nats_urls)
        self.workdir = workdir
        self.agents = agents
        self.t0 = time.monotonic()
        argv = [str(BIN / "kanade"), "up", "--agents", str(agents), "--http-port",
                str(self.http_port), "--nats-port", str(self.nats_port),
                "--data-dir", str(workdir / "data")]
        if cluster:
            argv.append("--cluster")
        if examples is not None:
            argv += ["--examples", str(examples)]
        self.up = Proc(argv, workdir / "up.log")
        self.up.wait_for("kanade is up", 180)
        self.ready_s = time.monotonic() - self.t0
        self.extra: list[Proc] = []
        # kanade up is secure by default: its trust root is in <data>/security.
        self.authority = Authority.load(workdir / "data" / SECURITY_DIR)

    @property
    def credentials(self) -> BusCredentials:
        """What the benchmark's own NATS probes connect with."""
        return probe_credentials(self.authority)

    def swarm(self, n: int, exec_mode: str = "stub", prefix: str = "sim-") -> Proc:
        data = self.workdir / "swarm"
        trust = write_swarm_trust(self.authority, data, self.workdir / "data" / SIGNING_KEYS_DIR)
        sw = Proc([str(BIN / "kanade-agent"), "swarm", "--agents", str(n), "--prefix", prefix,
                   "--nats-url", self.nats_url, "--data-dir", str(data),
                   *swarm_args(trust), "--exec", exec_mode], self.workdir / "swarm.log")
        self.extra.append(sw)
        sw.wait_for("swarm ready", 900)
        self.wait_alive(n + self.agents)
        return sw

    def wait_alive(self, n: int, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            total = httpx.get(f"{self.url}/api/agents", params={"status": "alive", "limit": 1},
                              timeout=30).json()["total"]
            if total >= n:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"only {total} of {n} agents alive after {timeout:.0f}s")
            time.sleep(0.2)

    def stop(self) -> None:
        for p in reversed(self.extra):
            p.stop()
        self.up.stop()


def ensure_job(http: httpx.Client, job_id: str, script: str = "true") -> None:
    job = {"id": job_id, "version": "1",
           "execute": {"shell": "sh", "script": script, "timeout": "60s"}}
    resp = http.post("/api/jobs", json=job)
    if resp.status_code not in (200, 201, 409):
        resp.raise_for_status()


def free_ports(n: int) -> list[int]:
    return [free_port() for _ in range(n)]
