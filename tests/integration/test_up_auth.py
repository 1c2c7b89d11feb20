"""`kanade up --auth jwt`: a real JWT set-up on one machine, and the CLI's login flow; no
secret on any process's command line and no secret, credential, command text or output
readable by anyone but the owner (SPEC §8.3)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import psutil

from stack import BIN, start_up, stop_up

# An nkey seed (user, account, operator): the private half of a NATS identity.
NKEY_SEED = re.compile(r"\bS[UAO][A-Z2-7]{40,}")
# Files that hold a secret, a credential, command text or output, by name or suffix.
PRIVATE_SUFFIXES = (".creds", ".seed", ".key", ".db", ".db-wal", ".db-shm", ".log", ".jsonl")
PRIVATE_NAMES = ("jwt-secret", "admin-password", "keyring.json")
# ... or by where they are: the broker's JetStream store holds every command and output.
PRIVATE_PARTS = ("ledger", "outbox", "keys", "spool", "schedules", "jetstream")


def _holds_secrets(path: Path, data_dir: Path) -> bool:
    parts = path.relative_to(data_dir).parts
    return (
        path.name.endswith(PRIVATE_SUFFIXES)
        or path.name in PRIVATE_NAMES
        or any(p in PRIVATE_PARTS for p in parts)
    )


def assert_owner_only(data_dir: Path) -> list[Path]:
    """Every private file under ``data_dir`` is 0600 (no group/other bit) and every
    directory on the way to it is 0700; returns the files checked."""
    checked = []
    for root, dirs, files in os.walk(data_dir):
        here = Path(root)
        mode = stat.S_IMODE(here.stat().st_mode)
        assert mode & 0o077 == 0, f"{here} is {oct(mode)}"
        for name in files:
            path = here / name
            if _holds_secrets(path, data_dir):
                mode = stat.S_IMODE(path.lstat().st_mode)
                assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
                checked.append(path)
        dirs.sort()
    return checked


def assert_no_secret_on_a_command_line(root_pid: int, secrets: list[str]) -> int:
    """No JWT secret, password, token or nkey seed in any process's argv (every local user
    can read /proc/<pid>/cmdline); returns how many processes were checked."""
    tree = psutil.Process(root_pid)
    procs = [tree, *tree.children(recursive=True)]
    for proc in procs:
        line = " ".join(proc.cmdline())
        for secret in secrets:
            assert secret not in line, proc.cmdline()
        assert not NKEY_SEED.search(line), proc.cmdline()
    return len(procs)


def _seeds(data_dir: Path) -> list[str]:
    found = []
    for path in data_dir.rglob("*"):
        if path.is_file() and path.suffix in (".creds", ".seed"):
            found += NKEY_SEED.findall(path.read_text())
    return found


# SQLite only: `kanade up` keeps its store in its data dir (it takes no --db); its
# PostgreSQL topology, `kanade up --cluster`, is test_up_cluster.py's.
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
        # No secret on any command line: every local user can read /proc/<pid>/cmdline —
        # not the JWT secret, the admin password, nor any identity's nkey seed.
        seeds = _seeds(data)
        assert len(seeds) >= 4  # operator, accounts, backend/system/operator creds, agent
        checked = assert_no_secret_on_a_command_line(
            stack.proc.pid, [secret, password_file.read_text().strip(), *seeds]
        )
        assert checked >= 4  # supervisor, broker, backend, agent
        trust = data / "agents" / "local-1" / "trust"
        assert oct((trust / "agent.creds").stat().st_mode & 0o777) == "0o600"
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
        # Now that there is output, a ledger, an outbox and logs: everything that can hold a
        # secret, a credential, command text or output is for the owner only.
        private = assert_owner_only(data)
        names = {p.name for p in private}
        assert {"agent.creds", "operator.creds", "backend.creds", "ca.key", "kanade.db",
                "journal.jsonl", "backend.log", "jwt-secret"} <= names, names  # fmt: skip
        assert any("jetstream" in p.parts for p in private)
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
