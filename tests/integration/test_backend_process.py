"""``kanade-backend run`` as a real process: serves HTTP, stops cleanly on signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from kanade.bus import EmbeddedBroker, free_port
from pgdb import db_env
from polling import Fatal, wait_until
from secured import authority_dir

DEADLINE = 30.0
# A start is bounded like every stack's (tests/stack.py): on a loaded 2-core CI machine
# the backend's broker set-up (topology, consumers) is retried with backoff and took more
# than 30 s; this catches a hang, not a slow machine.
START_DEADLINE = 60.0


def start_backend(
    nats_url: str, db: Path | str, port: int, log: Path, *, authority: Path | None = None
) -> subprocess.Popen[str]:
    """The backend's log goes to a file: a pipe nobody reads while the test runs would
    block the backend once it filled, and a failure can show the log."""
    cmd = [
        sys.executable, "-m", "kanade.backend.cli", "run",
        "--nats-url", nats_url, "--http-port", str(port),
        "--authority", str(authority or authority_dir()),
    ]  # fmt: skip
    with open(log, "w") as fh:
        return subprocess.Popen(
            cmd, stderr=fh, stdout=subprocess.DEVNULL, text=True, env=db_env(db)
        )


def wait_healthy(port: int, proc: subprocess.Popen[str], log: Path) -> dict[str, object]:
    last: dict[str, object] = {}

    def healthy() -> dict[str, object] | None:
        if proc.poll() is not None:
            raise Fatal(f"backend exited early ({proc.returncode}):\n{log.read_text()[-2000:]}")
        # A generous answer time: a backend busy setting itself up answers late, not never.
        body = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
        last.clear()
        last.update(body)
        return dict(body) if body["broker"] else None

    body: dict[str, object] = wait_until(
        healthy, "backend healthy", timeout=START_DEADLINE, tolerate=(httpx.HTTPError,),
        diagnostics=lambda: f"last /health: {last}\n{log.read_text()[-2000:]}",
    )  # fmt: skip
    return body


@pytest.mark.stores  # its store closes cleanly on a signal: SQLite and PostgreSQL
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_and_stops_cleanly_on_signal(
    nats_server: EmbeddedBroker, tmp_path: Path, store_url: str, sig: signal.Signals
) -> None:
    port = free_port()
    log = tmp_path / "backend.log"
    proc = start_backend(nats_server.url, store_url, port, log)
    try:
        health = wait_healthy(port, proc, log)
        assert health["status"] == "ok"
        job = "id: hello\nversion: '1'\nexecute: {shell: sh, script: echo hi, timeout: 5s}\n"
        r = httpx.post(
            f"http://127.0.0.1:{port}/api/jobs",
            content=job,
            headers={"content-type": "application/yaml"},
        )
        assert r.status_code == 201
        proc.send_signal(sig)
        assert proc.wait(timeout=DEADLINE) == 0
        assert "backend stopped" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_start_failure_exits_non_zero(nats_server: EmbeddedBroker, tmp_path: Path) -> None:
    port = free_port()
    first = start_backend(nats_server.url, tmp_path / "a.db", port, tmp_path / "a.log")
    try:
        wait_healthy(port, first, tmp_path / "a.log")
        second = start_backend(nats_server.url, tmp_path / "b.db", port, tmp_path / "b.log")
        assert second.wait(timeout=DEADLINE) != 0  # the port is taken
    finally:
        first.terminate()
        first.wait(timeout=DEADLINE)


def test_refuses_to_start_without_an_authority(tmp_path: Path) -> None:
    """No anonymous connection, ever (SPEC §8.1): the flag is required and named."""
    env = {k: v for k, v in os.environ.items() if k != "KANADE_AUTHORITY_DIR"}
    argv = [sys.executable, "-m", "kanade.backend.cli", "run", "--db", str(tmp_path / "k.db"),
            "--http-port", str(free_port())]  # fmt: skip
    missing = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=DEADLINE)
    assert missing.returncode == 2
    assert "--authority DIR" in missing.stderr and "KANADE_AUTHORITY_DIR" in missing.stderr
    # A directory that is not a trust directory is named with what is missing in it.
    empty = tmp_path / "not-an-authority"
    empty.mkdir()
    wrong = subprocess.run(
        [*argv, "--authority", str(empty)], env=env, capture_output=True, text=True,
        timeout=DEADLINE,
    )  # fmt: skip
    assert wrong.returncode == 2
    assert str(empty / "ca.pem") in wrong.stderr and "not a kanade trust directory" in wrong.stderr


def test_refuses_a_bad_retention_setting_naming_its_field(tmp_path: Path) -> None:
    """Every bad value and its message: tests/unit/core/test_retention.py."""
    value, field = "resluts.max_rows=10", "retention.resluts"
    argv = [sys.executable, "-m", "kanade.backend.cli", "run", "--db", str(tmp_path / "k.db"),
            "--http-port", str(free_port()), "--authority", str(authority_dir()),
            "--retain", "results.max_age=60d", "--retain", value]  # fmt: skip
    refused = subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE)
    assert refused.returncode == 2
    said = " ".join(refused.stderr.replace("│", " ").split())
    assert f"--retain: {field}:" in said, refused.stderr
    assert not (tmp_path / "k.db").exists()  # refused before anything was created
