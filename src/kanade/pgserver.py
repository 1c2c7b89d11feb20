"""A throwaway PostgreSQL server: ``initdb`` in a temp dir, one ``postgres`` child on loopback.

For the test suites (the store, projection and API suites run on SQLite AND PostgreSQL),
the ingest benchmark and trying out the scale-out store (SPEC §9). Not a way to run
production PostgreSQL: that is the operator's (docs/deploy.md).

Debian's ``postgresql`` package provides the binaries (``make test`` installs it).
PostgreSQL refuses to run as root, so under root the server runs as a dedicated system
user (created on first use); its data directory is a fresh ``mkdtemp`` in the system
temp dir, because a pytest ``tmp_path`` below root's 0700 home is not reachable by it.
Clients connect over TCP on 127.0.0.1 with a password (scram-sha-256): no trust auth,
no Unix socket shared with anything else.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

OS_USER = "kanadepg"
"""The system user the server runs as when we are root (initdb refuses root)."""

SUPERUSER = "kanade"
"""The database superuser ``initdb`` creates (the URL's user)."""

_BINARIES = ("initdb", "postgres")

# Servers still running when the interpreter exits are stopped, so a crashed test run
# never leaves an orphan postgres holding its port and data dir.
_LIVE: weakref.WeakSet[EmbeddedPostgres] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop(timeout=5)


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def find_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``postgres``: $PATH first, then Debian's
    versioned ``/usr/lib/postgresql/<N>/bin`` (newest version wins)."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for d in versions:
        if all(os.access(Path(d) / b, os.X_OK) for b in _BINARIES):
            return Path(d)
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, postgres) not found on $PATH or in "
        "/usr/lib/postgresql/*/bin: install Debian's postgresql package "
        "(`make postgres-deps`, or `apt-get install postgresql`)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


class EmbeddedPostgres:
    """One PostgreSQL server in a fresh temp directory, on a free loopback port.

    ``durable=False`` turns off fsync, synchronous commit and full-page writes: for tests,
    where a crash of the machine may lose the data anyway. Benchmarks keep the defaults
    (``durable=True``) so the numbers are those of a real server.
    """

    def __init__(
        self,
        *,
        durable: bool = True,
        port: int | None = None,
        base_dir: str | None = None,
        settings: dict[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
        root: Path | None = None,
        password: str | None = None,
    ) -> None:
        """``root``: a directory kept across runs (``kanade up --cluster``): initialised
        once, started again with its data at every start; it must be reachable by the user
        the server runs as (see :func:`server_root`). ``password``: the superuser's, for a
        kept server (default: a fresh random one, for a throwaway server)."""
        self.bin_dir = find_bin_dir()
        self.durable = durable
        self.port = port if port is not None else _free_port()
        self.password = password or secrets.token_hex(16)
        self._base_dir = base_dir
        self._settings = settings or {}
        self._preexec = preexec
        self._kept_root = Path(root) if root is not None else None
        self._root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._as_user: str | None = None

    # --- addresses ------------------------------------------------------------------------
    def url(self, database: str = "postgres", driver: str = "psycopg") -> str:
        """A SQLAlchemy URL for ``database`` on this server."""
        return (
            f"postgresql+{driver}://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"
        )

    @property
    def data_dir(self) -> Path:
        if self._root is None:
            raise RuntimeError("server not initialised")
        return self._root / "data"

    @property
    def log_file(self) -> Path:
        if self._root is None:
            raise RuntimeError("server not initialised")
        return self._root / "postgres.log"

    # --- life cycle -----------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> EmbeddedPostgres:
        if self._proc is not None and self._proc.poll() is None:
            return self
        if self._root is None:
            self._init()
        assert self._root is not None
        args = [
            str(self.bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            # The socket lives in our own directory, never in /var/run/postgresql.
            "-c", f"unix_socket_directories={self._root}",
            "-c", "max_connections=200",
        ]
        if not self.durable:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off"]
        for key, value in self._settings.items():
            args += ["-c", f"{key}={value}"]
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self._as_user,
                preexec_fn=self._preexec,
                start_new_session=True,  # a ^C of the test run is ours to forward
            )
        finally:
            log.close()
        _LIVE.add(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop(timeout=5)
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, close clients, checkpoint);
        SIGKILL if it takes longer than ``timeout``. The data directory stays (restartable)."""
        proc, self._proc = self._proc, None
        _LIVE.discard(self)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would (PostgreSQL recovers from its WAL at the next start)."""
        proc, self._proc = self._proc, None
        _LIVE.discard(self)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop the server and remove its directory (a kept ``root`` stays)."""
        self.stop()
        root, self._root = self._root, None
        if root is not None and self._kept_root is None:
            shutil.rmtree(root, ignore_errors=True)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- databases ------------------------------------------------------------------------
    def ensure_database(self, name: str) -> str:
        """Database ``name``, created unless it exists; its URL."""
        if not self.execute(f"SELECT 1 FROM pg_database WHERE datname = '{_ident(name)[1:-1]}'"):
            return self.create_database(name)
        return self.url(name)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (a copy of ``template`` if given); its URL."""
        ident = _ident(name)
        suffix = f" TEMPLATE {_ident(template)}" if template else ""
        self.execute(f"CREATE DATABASE {ident}{suffix}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement in autocommit mode (CREATE/DROP DATABASE need it)."""
        import psycopg  # the driver is a backend dependency; imported only when used

        with psycopg.connect(self._dsn(database), autocommit=True, connect_timeout=10) as conn:
            cur = conn.execute(sql.encode())
            return list(cur.fetchall()) if cur.description else []

    # --- internals ------------------------------------------------------------------------
    def _dsn(self, database: str) -> str:
        return (
            f"host=127.0.0.1 port={self.port} user={SUPERUSER} "
            f"password={self.password} dbname={database}"
        )

    def _init(self) -> None:
        uid = None
        if os.geteuid() == 0:
            account = _ensure_os_user(OS_USER)
            self._as_user, uid = account.pw_name, account.pw_uid
        if self._kept_root is not None:
            root = self._kept_root
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            if uid is not None:
                os.chown(root, uid, -1)
            if (root / "data" / "PG_VERSION").exists():
                self._root = root  # initialised by an earlier run: start it as it is
                return
        else:
            root = Path(tempfile.mkdtemp(prefix="kanade-pg-", dir=self._base_dir))
        pwfile = root / "pw"
        pwfile.write_text(self.password + "\n")
        if uid is not None:
            os.chown(root, uid, -1)
            os.chown(pwfile, uid, -1)
        self._root = root
        try:
            subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D", str(root / "data"),
                    "-U", SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    # Byte-order collation: the same sort order as SQLite's default BINARY.
                    "--locale=C",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                user=self._as_user,
                timeout=120,
            )
        except subprocess.CalledProcessError as exc:
            if self._kept_root is None:
                shutil.rmtree(root, ignore_errors=True)
            self._root = None
            raise RuntimeError(
                f"initdb failed ({exc.returncode}): {exc.stderr.decode(errors='replace')}"
            ) from exc
        finally:
            pwfile.unlink(missing_ok=True)

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                raise RuntimeError(f"postgres exited at start-up:\n{self._log_tail()}")
            try:
                with psycopg.connect(self._dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"postgres not ready after {timeout:.0f}s:\n{self._log_tail()}"
                    ) from None
                time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"


def server_root(data_dir: Path) -> Path:
    """Where ``kanade up --cluster`` keeps its PostgreSQL server for ``data_dir``: inside
    it (``postgres/``) — unless we are root. PostgreSQL refuses to run as root, and the
    user it runs as then (:data:`OS_USER`) cannot enter a data dir that is owner-only
    (SPEC §8.3), so a root's server lives in a directory of its own under ``/var/tmp``
    named after the data dir. The database there is a projection of the streams (SPEC
    §1.3): should it ever be lost, the backends rebuild it."""
    if os.geteuid() != 0:
        return data_dir / "postgres"
    import hashlib

    tag = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"kanade-postgres-{tag}"


def _ident(name: str) -> str:
    """A database name as a quoted identifier (names here are ours: letters, digits, _)."""
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError(f"database name {name!r}: letters, digits and _ only")
    return f'"{name}"'
