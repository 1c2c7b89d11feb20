"""`kanade up --auth jwt`: a real JWT set-up on one machine, and the CLI's login flow."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil

from stack import BIN, start_up, stop_up


def test_up_with_jwt_auth_login_roles_and_restart(tmp_path: Path) -> None:
    creds = tmp_path / "credentials.json"
    stack = start_up(tmp_path / "data", tmp_path / "up.log", agents=1, extra=("--auth", "jwt"))
    try:
        env = {**os.environ, "KANADE_URL": stack.url, "KANADE_CREDENTIALS": str(creds)}
        env.pop("KANADE_TOKEN", None)

        def kanade(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(BIN / "kanade"), *args], input=stdin, env=env,
                                  capture_output=True, text=True, timeout=60, check=False)

        denied = kanade("run", "--all", "--", "true")
        assert denied.returncode == 1 and "kanade login" in denied.stderr
        password_file = tmp_path / "data" / "admin-password"
        assert oct(password_file.stat().st_mode & 0o777) == "0o600"
        secret = (tmp_path / "data" / "jwt-secret").read_text().strip()
        assert oct((tmp_path / "data" / "jwt-secret").stat().st_mode & 0o777) == "0o600"
        data = tmp_path / "data"
        assert oct(data.stat().st_mode & 0o777) == "0o700"
        assert oct((data / "logs").stat().st_mode & 0o777) == "0o700"
        assert oct((data / "agents" / "local-1").stat().st_mode & 0o777) == "0o700"
        for private in (data / "kanade.db", data / "logs" / "backend.log"):
            assert oct(private.stat().st_mode & 0o777) == "0o600", private
        # No secret on any command line: every local user can read /proc/<pid>/cmdline.
        tree = psutil.Process(stack.proc.pid)
        for proc in [tree, *tree.children(recursive=True)]:
            assert secret not in " ".join(proc.cmdline()), proc.cmdline()
        wrong = kanade("login", "--username", "admin", "--password-stdin", stdin="nope\n")
        assert wrong.returncode == 1
        ok = kanade("login", "--username", "admin", "--password-stdin",
                    stdin=password_file.read_text())
        assert ok.returncode == 0, ok.stderr
        res = kanade("run", "--all", "--json", "--", "echo authed")
        assert res.returncode == 0 and '"stdout": "authed\\n"' in res.stdout, res.stderr
        # The agent's ledger now holds that command's text: owner only.
        ledger = tmp_path / "data" / "agents" / "local-1" / "ledger" / "journal.jsonl"
        assert oct(ledger.stat().st_mode & 0o777) == "0o600"
        assert kanade("freeze", "set", "--reason", "auth test").returncode == 0
        assert kanade("freeze", "clear").returncode == 0
        audit = kanade("audit", "--json")
        assert '"actor": "admin"' in audit.stdout, audit.stdout
        assert kanade("logout").returncode == 0
        assert kanade("agents").returncode == 1
    finally:
        stop_up(stack)
    # Restart on the same data dir: the same secret and admin password still work.
    again = start_up(tmp_path / "data", tmp_path / "up2.log", agents=1, extra=("--auth", "jwt"))
    stop_up(again)


def test_login_against_a_dev_backend_says_no_login_is_needed(tmp_path: Path) -> None:
    stack = start_up(tmp_path / "data", tmp_path / "up.log", agents=0)
    try:
        res = subprocess.run(
            [str(BIN / "kanade"), "login", "--username", "x", "--password-stdin"],
            input="pw\n", capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "KANADE_URL": stack.url},
        )
        assert res.returncode == 0 and "auth disabled" in res.stdout
    finally:
        stop_up(stack)
