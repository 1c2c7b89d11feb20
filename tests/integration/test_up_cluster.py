"""``kanade up --cluster`` as an operator runs it (SPEC §9): three brokers in a secured
cluster, PostgreSQL, two backend replicas and the agents, both dashboards printed; a data
dir a single-broker ``kanade up`` used before keeps everything (its streams move into the
cluster, the new database is rebuilt from them); a killed broker node is restarted and
the fleet keeps running; Ctrl-C stops every process, PostgreSQL included."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from kanade.bus.broker import free_port
from kanade.pgserver import server_root
from polling import wait_until
from stack import BIN, REPO, start_up, stop_up

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX process semantics"),
    pytest.mark.slow,  # two whole stacks, one after the other
]
READY_S = 180.0


def _free_run(n: int) -> int:
    """A port with the ``n - 1`` after it free too (--cluster takes a range)."""
    while True:
        first = free_port()
        if first + n < 65535 and all(_is_free(first + i) for i in range(n)):
            return first


def _is_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _run(url: str, script: str) -> str:
    done = subprocess.run([str(BIN / "kanade"), "run", "--all", "--", script],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "KANADE_URL": url})  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_single_node_data_dir_grows_into_the_cluster(tmp_path: Path) -> None:
    # A data dir PostgreSQL's own user can reach when we are root (server_root).
    data = Path(os.environ.get("TMPDIR", "/tmp")) / f"kanade-up-cluster-{os.getpid()}"
    shutil.rmtree(data, ignore_errors=True)
    try:
        single = start_up(data, tmp_path / "single.log", agents=1, examples=False)
        try:
            first = _run(single.url, "echo before-the-cluster")
            assert "before-the-cluster" in first
        finally:
            stop_up(single)
        _cluster_run(data, tmp_path / "cluster.log")
    finally:
        shutil.rmtree(server_root(data), ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


def _cluster_run(data: Path, log: Path) -> None:
    http_port, nats_port = _free_run(2), _free_run(3)
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [str(BIN / "kanade"), "up", "--cluster", "--agents", "2", "--data-dir", str(data),
             "--http-port", str(http_port), "--nats-port", str(nats_port), "--examples",
             str(REPO / "examples" / "jobs")],
            stdout=fh, stderr=subprocess.STDOUT, text=True, cwd=REPO,
            env={**os.environ, "COLUMNS": "250"},  # one line per summary entry
        )  # fmt: skip
    try:
        wait_until(lambda: "kanade is up (cluster)" in log.read_text() or proc.poll() is not None,
                   "kanade up --cluster ready", timeout=READY_S)  # fmt: skip
        text = log.read_text()
        assert proc.poll() is None, text
        urls = re.findall(r"dashboard \d\s+: (http://\S+)", text)
        assert urls == [f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{http_port + 1}"], text
        assert re.search(r"moved \d+ stream\(s\)", text), text
        assert (data / "nats.before-cluster").is_dir()
        a, b = urls
        # The exec made on the single node is there, in PostgreSQL, rebuilt from the streams.
        wait_until(lambda: any(e["kind"] == "adhoc" for e in
                               httpx.get(f"{b}/api/executions", timeout=5).json()["items"]),
                   "the single node's exec in the new database", timeout=60)  # fmt: skip
        assert sorted(httpx.get(f"{a}/health", timeout=5).json()["leads"]
                      + httpx.get(f"{b}/health", timeout=5).json()["leads"]) == [
            "deciders", "scheduler"]  # fmt: skip
        out = _run(b, "echo through-replica-2")
        assert out.count("through-replica-2") == 2  # local-1 and local-2
        brokers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if p.name().startswith("nats-server")]  # fmt: skip
        assert len(brokers) == 3
        brokers[0].kill()
        wait_until(lambda: "exited; restarting it" in log.read_text(), "the node restarted")
        assert _run(a, "echo one-node-down").count("one-node-down") == 2
        children = psutil.Process(proc.pid).children(recursive=True)
        postgres = [p for p in psutil.process_iter(["cmdline"])
                    if str(server_root(data)) in " ".join(p.info["cmdline"] or [])]  # fmt: skip
        assert postgres
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=90)
    assert "stopped." in log.read_text()

    def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
        out = []
        for p in procs:
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
        return out

    # "stopped." is printed as the last children are being reaped: poll, do not assume.
    wait_until(lambda: not alive(children) and not alive(postgres), "every child gone",
               timeout=15)  # fmt: skip
