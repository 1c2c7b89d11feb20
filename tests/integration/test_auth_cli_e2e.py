"""The operator's auth workflow with real processes: bootstrap an admin with
``kanade-backend user add``, start ``kanade-backend run --auth jwt``, then
``kanade login`` / ``whoami`` / ``freeze`` / ``audit`` / ``logout``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from kanade.bus import EmbeddedBroker, free_port
from pgdb import db_env
from polling import Fatal, wait_until
from secured import authority_dir

BIN = Path(sys.executable).parent
SECRET = "cli-e2e-secret-" + "z" * 32
PASSWORD = "admin-password-1"
DEADLINE = 30.0
# A start is bounded like every stack's (tests/stack.py): a hang, not a loaded machine.
START_DEADLINE = 60.0


def run(
    args: list[str], env: dict[str, str], stdin: str = "", check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        args, input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{args} exited {proc.returncode}: {proc.stderr}{proc.stdout}")
    return proc


def wait_healthy(url: str, proc: subprocess.Popen[str], log: Path) -> dict[str, Any]:
    def healthy() -> dict[str, Any] | None:
        if proc.poll() is not None:
            raise Fatal(f"backend exited early ({proc.returncode}):\n{log.read_text()[-2000:]}")
        # A generous answer time: a backend busy setting itself up answers late, not never.
        body: dict[str, Any] = httpx.get(f"{url}/health", timeout=5).json()
        return body if body["broker"] else None

    body: dict[str, Any] = wait_until(
        healthy, "backend healthy", timeout=START_DEADLINE, tolerate=(httpx.HTTPError,),
        diagnostics=lambda: log.read_text()[-2000:],
    )  # fmt: skip
    return body


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
    env = db_env(db, env)  # $KANADE_DB: a PostgreSQL URL holds a password
    run(
        [str(BIN / "kanade-backend"), "user", "add", "root", "--role", "admin",
         "--password-stdin"],
        env,
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    short = run(
        [str(BIN / "kanade-backend"), "user", "add", "x", "--password-stdin"],
        env,
        stdin="short\n",
        check=False,
    )
    assert short.returncode != 0 and "at least 8" in short.stderr

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "backend.log"
    with open(log, "w") as fh:  # a file: a pipe nobody reads would block the backend
        backend = subprocess.Popen(
            [str(BIN / "kanade-backend"), "run", "--nats-url", nats_server.url,
             "--http-port", str(port), "--auth", "jwt", "--authority", str(authority_dir())],
            env=env, stdout=subprocess.DEVNULL, stderr=fh, text=True,
        )  # fmt: skip
    try:
        assert wait_healthy(url, backend, log)["auth"] == "jwt"
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

        wait_until(lambda: {"user.login", "freeze.set"} <= {a["action"] for a in audit()},
                   "login and freeze audited", timeout=DEADLINE,
                   diagnostics=lambda: str(audit()))  # fmt: skip

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
