"""The operator's auth workflow with real processes: bootstrap an admin with
``kanade-backend user add``, start ``kanade-backend run --auth jwt``, then
``kanade login`` / ``whoami`` / ``freeze`` / ``audit`` / ``logout``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kanade.bus import EmbeddedBroker, free_port
from secured import authority_dir

BIN = Path(sys.executable).parent
SECRET = "cli-e2e-secret-" + "z" * 32
PASSWORD = "admin-password-1"
DEADLINE = 30.0


def run(
    args: list[str], env: dict[str, str], stdin: str = "", check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        args, input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{args} exited {proc.returncode}: {proc.stderr}{proc.stdout}")
    return proc


def wait_healthy(url: str, proc: subprocess.Popen[str]) -> dict[str, Any]:
    give_up = time.monotonic() + DEADLINE
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            pytest.fail(f"backend exited early ({proc.returncode})")
        try:
            body: dict[str, Any] = httpx.get(f"{url}/health", timeout=1).json()
            if body["broker"]:
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    pytest.fail("backend not healthy in time")


@pytest.mark.stores  # the backend process's users, freeze and audit: SQLite and PostgreSQL
def test_bootstrap_login_use_logout(
    nats_server: EmbeddedBroker, tmp_path: Path, store_url: str
) -> None:
    db = store_url
    env = {
        **os.environ,
        "KANADE_CREDENTIALS": str(tmp_path / "cfg" / "credentials.json"),
        "KANADE_JWT_SECRET": SECRET,
    }
    env.pop("KANADE_TOKEN", None)
    run(
        [str(BIN / "kanade-backend"), "user", "add", "root", "--role", "admin",
         "--password-stdin", "--db", db],
        env,
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    short = run(
        [str(BIN / "kanade-backend"), "user", "add", "x", "--password-stdin", "--db", db],
        env,
        stdin="short\n",
        check=False,
    )
    assert short.returncode != 0 and "at least 8" in short.stderr

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    backend = subprocess.Popen(
        [str(BIN / "kanade-backend"), "run", "--nats-url", nats_server.url, "--db", db,
         "--http-port", str(port), "--auth", "jwt", "--authority", str(authority_dir())],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait_healthy(url, backend)["auth"] == "jwt"
        kanade = [str(BIN / "kanade")]
        cli_env = {**env, "KANADE_URL": url}

        denied = run([*kanade, "whoami"], cli_env, check=False)
        assert denied.returncode != 0 and "kanade login" in denied.stderr

        bad = run(
            [*kanade, "login", "-u", "root", "--password-stdin"], cli_env, "nope\n", check=False
        )
        assert bad.returncode != 0 and "wrong username or password" in bad.stderr
        run([*kanade, "login", "--username", "root", "--password-stdin"], cli_env, PASSWORD + "\n")
        creds = Path(env["KANADE_CREDENTIALS"])
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
        assert url in json.loads(creds.read_text())

        me = json.loads(run([*kanade, "whoami", "--json"], cli_env).stdout)
        assert me == {"actor": "root", "role": "admin", "auth": "jwt"}
        run([*kanade, "freeze", "set", "--reason", "release night"], cli_env)
        status = json.loads(run([*kanade, "freeze", "status", "--json"], cli_env).stdout)
        assert status["frozen"] is True and status["freeze"]["by"] == "root"

        def audit() -> list[dict[str, Any]]:
            out = run([*kanade, "audit", "--json", "--actor", "root"], cli_env).stdout
            return [json.loads(line) for line in out.splitlines()]

        give_up = time.monotonic() + DEADLINE
        while {"user.login", "freeze.set"} - {a["action"] for a in audit()}:
            assert time.monotonic() < give_up, audit()
            time.sleep(0.1)

        assert "logged out" in run([*kanade, "logout"], cli_env).stdout
        again = run([*kanade, "freeze", "clear"], cli_env, check=False)
        assert again.returncode != 0 and "authentication required" in again.stderr
    finally:
        backend.terminate()
        backend.wait(timeout=DEADLINE)


def test_unsafe_auth_configuration_refuses_to_start(
    nats_server: EmbeddedBroker, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KANADE_")}
    proc = run(
        [str(BIN / "kanade-backend"), "run", "--nats-url", nats_server.url,
         "--db", str(tmp_path / "k.db"), "--http-port", str(free_port()), "--auth", "token",
         "--authority", str(authority_dir())],
        env,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "--auth-token" in proc.stderr
