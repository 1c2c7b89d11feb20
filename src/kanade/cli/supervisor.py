"""``kanade up``: a whole kanade on one machine — broker, backend and N agents.

Every part runs as its own process (exactly as in production, just on
loopback), in its own session so that Ctrl-C reaches only this supervisor,
which then stops the agents, the backend and the broker in that order. A part
that dies unexpectedly is restarted, like a service manager would.

Secure by default (SPEC §8): the deployment's trust root lives in
``<data_dir>/security`` (created once, reused on every start), the broker takes only
TLS connections with a credential from it, and each local agent is enrolled — its
credential and the CA written into its trust dir — before it starts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import IO, Any

import httpx

from kanade.bus.broker import BrokerError, EmbeddedBroker, free_port
from kanade.bus.credentials import AGENT_CA, AGENT_CREDS, AGENT_KEYRING, AGENT_TRUST_DIR
from kanade.cli import output
from kanade.cli.client import CliError
from kanade.cli.documents import read_job_file
from kanade.cli.lifeline import DataDirBusy, lock_data_dir, release
from kanade.deathsig import die_with_parent
from kanade.security.authority import Authority
from kanade.security.files import private_dir
from kanade.security.signing_keys import ensure_key_dir

_READY_TIMEOUT_S = 60.0
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
# A kill -9 of `kanade up` runs no clean-up code: its children must not outlive it.
_DIE_WITH_US = die_with_parent(signal.SIGTERM)
_ENROL_PARALLEL = 4  # agents enrolled at once by `kanade up` (each is a short process)

# Under the data dir (docs/security.md, "kanade up").
SECURITY_DIR = "security"
SIGNING_KEYS_DIR = "keys"


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class Child:
    """One supervised process with its log file."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        """``env``: added to ours (secrets go there, never on the command line)."""
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._log = os.fdopen(fd, "ab")  # closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_DIE_WITH_US,
            env=None if self.env is None else {**os.environ, **self.env},
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def wait(self, timeout: float) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        self.signal(signal.SIGTERM)
        if not self.wait(timeout):
            self.signal(signal.SIGKILL)
            self.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _wait_until(check: Any, what: str, children: list[Child], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for c in children:
            if not c.alive():
                raise CliError(
                    f"{c.name} exited while waiting for {what}; "
                    f"its log ({c.log_path}) ends with:\n{c.log_tail()}"
                )
        try:
            value = check()
            if value:
                return value
        except httpx.HTTPError as exc:
            last_error = exc
        time.sleep(0.1)
    raise CliError(
        f"timed out after {timeout:.0f}s waiting for {what}"
        + (f" (last error: {last_error})" if last_error else "")
    )


def _secret_file(path: Path, nbytes: int) -> str:
    """A random secret kept in the data dir (0600), so a restart reuses it."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(nbytes)
    # Created 0600 from the start (no window in which it is world-readable).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def _jwt_setup(data_dir: Path, db: str) -> tuple[list[str], str, str]:
    """Backend flags for auth jwt, plus the bootstrap admin's name and password.

    The admin user is created once (``kanade-backend user add``); its password and the
    signing secret live in the data dir, readable by the owner only.
    """
    secret_path = data_dir / "jwt-secret"
    _secret_file(secret_path, 48)
    password_file = data_dir / "admin-password"
    fresh = not password_file.exists()
    password = _secret_file(password_file, 18)
    if fresh:
        # The database in the environment, not the command line: a PostgreSQL URL
        # carries a password.
        res = subprocess.run(
            _python_module("kanade.backend.cli", "user", "add", "admin", "--role", "admin",
                           "--password-stdin", "--replace"),
            input=password + "\n", text=True, capture_output=True, check=False,
            env={**os.environ, "KANADE_DB": db},
        )
        if res.returncode != 0:
            password_file.unlink(missing_ok=True)
            raise CliError(f"could not create the admin user: {res.stderr.strip()}")
    # The backend reads the secret from the file: on its command line it would be readable
    # by every local user (/proc/<pid>/cmdline).
    return ["--auth", "jwt", "--jwt-secret-file", str(secret_path)], "admin", password


def _enrol_agent(
    http: httpx.Client, url: str, pc_id: str, groups: list[str], data_dir: Path, ca: Path
) -> None:
    """Enrol a local agent exactly as an operator enrols a remote one (SPEC §8.1): a
    single-use token from the API, then ``kanade-agent enroll`` (the agent makes its key
    pair; the token goes through stdin, never on a command line). The agent is then listed
    as enrolled and ``kanade agent revoke`` cuts it off like any other.

    Done once and kept across restarts; again when the credential is missing or pins a CA
    that is no longer this deployment's (the security dir was re-created)."""
    private_dir(data_dir)  # the agent's data dir: it holds its ledger (command text)
    trust = data_dir / AGENT_TRUST_DIR
    creds, pinned = trust / AGENT_CREDS, trust / AGENT_CA
    if creds.is_file() and pinned.is_file() and pinned.read_bytes() == ca.read_bytes():
        return
    resp = http.post("/api/agents/enroll-tokens", json={"groups": groups, "expires": "10m"})
    if resp.status_code >= 400:
        raise CliError(f"could not make an enrolment token for {pc_id}: {resp.text}")
    done = subprocess.run(
        _python_module(
            "kanade.agent.cli", "enroll", url, "-", "--pc-id", pc_id,
            "--data-dir", str(data_dir), "--config", str(data_dir / "agent.yaml"),
        ),
        input=resp.json()["token"] + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise CliError(f"enrolling {pc_id} failed: {done.stderr.strip() or done.stdout.strip()}")


def _enrol_and_start(
    http: httpx.Client,
    url: str,
    agents: list[Child],
    groups: dict[str, list[str]],
    dirs: dict[str, Path],
    ca: Path,
    children: list[Child],
) -> None:
    """Enrol the local agents a few at a time, start each as soon as it is enrolled, and
    wait until every one has checked in (single node and ``--cluster`` alike)."""
    with ThreadPoolExecutor(max_workers=_ENROL_PARALLEL) as pool:
        enrolling = {
            pool.submit(_enrol_agent, http, url, a.name, groups[a.name], dirs[a.name], ca): a
            for a in agents
        }
        for done in as_completed(enrolling):
            done.result()
            enrolling[done].start()

    def all_alive() -> bool:
        items = http.get("/api/agents", params={"limit": 1000}).json().get("items", [])
        alive = {a["pc_id"] for a in items if a.get("status") == "alive"}
        return all(a.name in alive for a in agents)

    _wait_until(all_alive, f"{len(agents)} agents to check in", children, _READY_TIMEOUT_S)


def _add_group_members(http: httpx.Client, groups_of: dict[str, list[str]]) -> None:
    """Register the local agents' groups in KV, where the backend reads membership from
    when it provisions an agent's command consumer (an agent's own claim counts for
    nothing). Adds only: memberships an operator set stay across restarts."""
    members: dict[str, list[str]] = {}
    for pc, groups in groups_of.items():
        for group in groups:
            members.setdefault(group, []).append(pc)
    for group, pcs in members.items():
        # force: the agents have not connected yet, so the backend does not know them.
        resp = http.post(
            f"/api/groups/{group}/members", json={"pcs": pcs}, params={"force": "true"}
        )
        if resp.status_code >= 400:
            raise CliError(f"adding {pcs} to group {group} failed: {resp.text}")


def run_up(
    *,
    agents_n: int,
    http_port: int,
    nats_port: int,
    data_dir: Path,
    examples: Path | None,
    auth: str = "disabled",
) -> None:
    t0 = time.monotonic()
    if agents_n < 0:
        raise CliError("--agents must be >= 0")
    data_dir = data_dir.resolve()
    logs = data_dir / "logs"
    # The data dir holds the database (all output, password hashes), secrets, logs and the
    # agents' ledgers (full commands): owner only, whatever the umask (SPEC §8.3).
    for private in (data_dir, logs, data_dir / "agents"):
        private_dir(private)
    try:
        lock = lock_data_dir(data_dir)
    except DataDirBusy as exc:
        raise CliError(str(exc)) from None
    try:
        _run_locked(
            t0, agents_n=agents_n, http_port=http_port, nats_port=nats_port,
            data_dir=data_dir, logs=logs, examples=examples, auth=auth,
        )  # fmt: skip
    finally:
        release(lock)


def _run_locked(
    t0: float,
    *,
    agents_n: int,
    http_port: int,
    nats_port: int,
    data_dir: Path,
    logs: Path,
    examples: Path | None,
    auth: str,
) -> None:
    for port, flag in ((nats_port, "--nats-port"), (http_port, "--http-port")):
        if not _port_free(port):
            raise CliError(
                f"port {port} is already in use; pass a free {flag} (or stop the other kanade up)"
            )

    if auth not in ("disabled", "jwt"):
        raise CliError("--auth must be disabled or jwt")
    auth_flags: list[str] = []
    admin: tuple[str, str] | None = None
    if auth == "jwt":
        auth_flags, name, password = _jwt_setup(data_dir, str(data_dir / "kanade.db"))
        admin = (name, password)
    # The broker's monitoring port is picked here, not left to the broker: a free port
    # picked there could be the HTTP port the caller chose (also released, so also free),
    # and the backend would then lose its port to the broker's monitor.
    monitor_port = free_port()
    while monitor_port in (http_port, nats_port):
        monitor_port = free_port()
    security_dir = data_dir / SECURITY_DIR
    keys_dir = data_dir / SIGNING_KEYS_DIR
    authority = Authority.create(security_dir)  # idempotent: a restart keeps every identity
    broker = EmbeddedBroker(data_dir / "nats", port=nats_port, http_port=monitor_port,
                            log_file=logs / "nats-server.log",
                            security=authority.broker_security(), preexec=_DIE_WITH_US)
    output.err.print(f"starting broker on {broker.url} …")
    broker.start()
    url = f"http://127.0.0.1:{http_port}"
    ensure_key_dir(keys_dir)  # `kanade keys init`: the backend signs with it (SPEC §8.2)
    backend = Child(
        "backend",
        _python_module(
            "kanade.backend.cli",
            "run",
            "--nats-url",
            broker.url,
            "--db",
            str(data_dir / "kanade.db"),
            "--http-port",
            str(http_port),
            "--authority",
            str(security_dir),
            "--signing-keys",
            str(keys_dir),
            *auth_flags,
        ),
        logs / "backend.log",
    )
    names = [f"local-{i}" for i in range(1, agents_n + 1)]
    agent_dirs = {pc: data_dir / "agents" / pc for pc in names}
    agent_groups = {pc: ["local", *(["canary"] if pc == "local-1" else [])] for pc in names}
    agents = [
        Child(
            pc,
            _python_module(
                "kanade.agent.cli",
                "run",
                "--pc-id",
                pc,
                *[arg for g in agent_groups[pc] for arg in ("--group", g)],
                "--nats-url",
                broker.url,
                "--data-dir",
                str(agent_dirs[pc]),
                # explicit, so a $KANADE_AGENT_KEYRING in our environment is not inherited
                "--keyring",
                str(agent_dirs[pc] / AGENT_TRUST_DIR / AGENT_KEYRING),
                "--heartbeat-interval",
                "5",
            ),
            logs / f"{pc}.log",
        )
        for pc in names
    ]
    children = [backend, *agents]
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    # SIGHUP too: closing the terminal `kanade up` runs in stops everything cleanly.
    old = {s: signal.signal(s, on_signal) for s in _STOP_SIGNALS}
    try:
        backend.start()
        with httpx.Client(base_url=url, timeout=2.0) as http:
            _wait_until(
                lambda: http.get("/health").json().get("broker"),
                "the backend to be healthy",
                [backend],
                _READY_TIMEOUT_S,
            )
            if admin is not None:
                # The supervisor itself is a client: it logs in like an operator would.
                resp = http.post(
                    "/api/auth/login", json={"username": admin[0], "password": admin[1]}
                )
                if resp.status_code != 200:
                    raise CliError(f"admin login failed: {resp.text}")
                http.headers["Authorization"] = f"Bearer {resp.json()['token']}"
            _add_group_members(http, agent_groups)
            # Enrolment is a process start per agent, mostly waiting: a few at a time, and
            # each agent starts as soon as its own credential is there.
            _enrol_and_start(http, url, agents, agent_groups, agent_dirs, authority.ca_file,
                             children)  # fmt: skip
            loaded = _load_examples(http, examples)
        ready_s = time.monotonic() - t0
        output.out.print(f"\n[bold green]kanade is up[/] in {ready_s:.1f}s")
        output.out.print(f"  dashboard & API : {url}   (OpenAPI: {url}/api/openapi.json)")
        output.out.print(f"  broker          : {broker.url}   (TLS; CA {authority.ca_file})")
        output.out.print(
            f"  broker admin    : KANADE_NATS_CREDS={authority.operator_creds} "
            f"KANADE_NATS_CA={authority.ca_file} kanade jetstream status --nats-url {broker.url}"
        )
        output.out.print(f"  agents          : {', '.join(a.name for a in agents) or 'none'}")
        output.out.print(f"  example jobs    : {', '.join(loaded) or 'none'}")
        output.out.print(f"  data & logs     : {data_dir}")
        if admin is not None:
            pw_file = data_dir / "admin-password"
            output.out.print(f"  auth            : jwt; user {admin[0]!r}, password in {pw_file}")
            output.out.print(
                f"  log in          : KANADE_URL={url} kanade login --username {admin[0]} "
                f"--password-stdin < {pw_file}"
            )
        output.out.print(f"  try             : KANADE_URL={url} kanade run --all -- 'echo hi'")
        output.out.print("Press Ctrl-C to stop everything.")
        sys.stdout.flush()
        _supervise(children, stop, broker)
    finally:
        output.err.print("stopping agents, backend and broker …")
        for c in agents:
            c.signal(signal.SIGTERM)
        for c in agents:
            c.stop(timeout=10)
        backend.stop(timeout=15)
        broker.stop()
        for s, h in old.items():
            signal.signal(s, h)
        output.err.print("stopped.")


def _supervise(children: list[Child], stop: threading.Event, broker: EmbeddedBroker) -> None:
    """Restart whatever dies, saying so: the broker first (everything needs it)."""
    while not stop.wait(0.5):
        if not broker.is_running():
            output.err.print(
                "[yellow]the broker (nats-server) exited; restarting it on the same port "
                f"and store; log: {broker.log_file}[/]"
            )
            try:
                broker.start()
            except BrokerError as exc:
                output.err.print(f"[red]the broker did not restart: {exc}[/]")
                continue
        for c in children:
            if not c.alive():
                code = c.proc.returncode if c.proc else None
                c.restarts += 1
                output.err.print(
                    f"[yellow]{c.name} exited (code {code}); restarting "
                    f"(restart #{c.restarts}); log: {c.log_path}[/]"
                )
                c.stop(timeout=1)
                c.start()


EXAMPLE_JOBS = Path(__file__).resolve().parents[1] / "examples" / "jobs"
"""The example jobs shipped in the package (package data), loaded when ``--examples`` is
not given, wherever ``kanade up`` runs from."""


def _load_examples(http: httpx.Client, examples: Path | None) -> list[str]:
    folder = EXAMPLE_JOBS if examples is None else examples
    if examples is None and not folder.is_dir():
        return []  # an install without package data: nothing to load
    if not folder.is_dir():
        raise CliError(f"--examples {folder} is not a directory")
    loaded = []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml"), *folder.glob("*.json")]):
        job = read_job_file(path)
        resp = http.post("/api/jobs", json=job.model_dump(mode="json", exclude_none=True))
        if resp.status_code >= 400:
            raise CliError(f"loading {path} failed: HTTP {resp.status_code} {resp.text}")
        loaded.append(job.id)
    return loaded
