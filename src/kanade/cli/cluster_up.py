"""``kanade up --cluster``: the scale-out topology on one machine, for trying it out (SPEC
§9) — three ``nats-server`` in a JetStream cluster, a PostgreSQL server, two backend
replicas on it and N agents, each its own process, secured exactly like ``kanade up``
(TLS and JWT for every client, the routes between the brokers mutual TLS with the
deployment's CA plus a route password, signed commands).

* brokers: ``--nats-port`` and the two ports after it; stores under
  ``<data_dir>/cluster/n1..n3``; every client is given all three URLs and fails over;
* PostgreSQL: ``initdb`` once in ``<data_dir>/postgres`` (as root, where its own user can
  reach it: :func:`kanade.pgserver.server_root`), started at every run, its superuser
  password in ``<data_dir>/postgres-password`` (0600), handed to the backends in their
  environment, never on a command line;
* backends: ``--http-port`` and the port after it, one database, one signing-key
  directory, one JWT secret (a token from one is good on the other);
* a data dir a single-broker ``kanade up`` used before: its broker's streams are moved into
  the cluster whole (:mod:`kanade.bus.migrate`) before any backend starts, and its store is
  kept as ``<data_dir>/nats.before-cluster``; the new database is rebuilt from the streams
  and the operator state in KV (SPEC §1.3).

Ctrl-C stops agents, backends, brokers and PostgreSQL, in that order; a part that dies is
restarted, as by a service manager.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from kanade.bus.broker import BrokerError, EmbeddedBroker, free_port
from kanade.bus.cluster import BrokerCluster
from kanade.bus.credentials import AGENT_KEYRING, AGENT_TRUST_DIR, BusCredentials
from kanade.cli import output
from kanade.cli.client import CliError
from kanade.cli.lifeline import DataDirBusy, lock_data_dir, release
from kanade.cli.supervisor import (
    _DIE_WITH_US,
    _READY_TIMEOUT_S,
    _STOP_SIGNALS,
    SECURITY_DIR,
    SIGNING_KEYS_DIR,
    Child,
    _add_group_members,
    _enrol_and_start,
    _jwt_setup,
    _load_examples,
    _port_free,
    _python_module,
    _secret_file,
    _wait_until,
)
from kanade.pgserver import EmbeddedPostgres, server_root
from kanade.security.authority import Authority
from kanade.security.files import private_dir
from kanade.security.signing_keys import ensure_key_dir

NODES = 3
REPLICAS = 2
DATABASE = "kanade"
MIGRATED_STORE = "nats.before-cluster"


def run_up_cluster(
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
    if auth not in ("disabled", "jwt"):
        raise CliError("--auth must be disabled or jwt")
    data_dir = data_dir.resolve()
    logs = data_dir / "logs"
    for private in (data_dir, logs, data_dir / "agents"):
        private_dir(private)
    try:
        lock = lock_data_dir(data_dir)
    except DataDirBusy as exc:
        raise CliError(str(exc)) from None
    try:
        _run_locked(t0, agents_n=agents_n, http_port=http_port, nats_port=nats_port,
                    data_dir=data_dir, logs=logs, examples=examples, auth=auth)  # fmt: skip
    finally:
        release(lock)


def _ports(first: int, n: int, flag: str) -> list[int]:
    ports = [first + i for i in range(n)]
    for port in ports:
        if not _port_free(port):
            raise CliError(
                f"port {port} is already in use; --cluster takes {flag} and the {n - 1} "
                f"port(s) after it: pass a free {flag} (or stop the other kanade up)"
            )
    return ports


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
    http_ports = _ports(http_port, REPLICAS, "--http-port")
    nats_ports = _ports(nats_port, NODES, "--nats-port")
    if set(http_ports) & set(nats_ports):
        raise CliError("--http-port and --nats-port ranges overlap; pick ports further apart")
    authority = Authority.create(data_dir / SECURITY_DIR)
    cluster = BrokerCluster(
        data_dir / "cluster",
        size=NODES,
        security=authority.broker_security(),
        routes=authority.route_security(),
        client_ports=nats_ports,
        log_dir=logs,
        preexec=_DIE_WITH_US,
        taken=set(http_ports),
    )
    pg_root, pg_password = server_root(data_dir), data_dir / "postgres-password"
    if not pg_password.exists() and pg_root.exists():
        # A server left from a data dir that was deleted since (a root's lives outside
        # it): its password is gone with the data dir. Its database was a projection of
        # the streams (SPEC §1.3); start over.
        shutil.rmtree(pg_root, ignore_errors=True)
    pg = EmbeddedPostgres(
        root=pg_root,
        password=_secret_file(pg_password, 24),
        preexec=_DIE_WITH_US,
        port=_free_other(set(http_ports) | set(nats_ports)),
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in _STOP_SIGNALS}
    children: list[Child] = []
    try:
        output.err.print(f"starting a {NODES}-node broker cluster on {', '.join(cluster.urls)} …")
        cluster.start()
        moved = _adopt_single_broker(data_dir, logs, authority, cluster)
        output.err.print(f"starting PostgreSQL ({pg.port}) in {server_root(data_dir)} …")
        pg.start()
        db_url = pg.ensure_database(DATABASE)
        keys_dir = data_dir / SIGNING_KEYS_DIR
        ensure_key_dir(keys_dir)
        auth_flags: list[str] = []
        admin: tuple[str, str] | None = None
        if auth == "jwt":
            auth_flags, name, password = _jwt_setup(data_dir, db_url)
            admin = (name, password)
        urls = [f"http://127.0.0.1:{p}" for p in http_ports]
        nats = ",".join(cluster.urls)
        # The database URL goes in the environment: it carries PostgreSQL's password.
        backends = [
            Child(
                f"backend-{i + 1}",
                _python_module(
                    "kanade.backend.cli", "run",
                    "--nats-url", nats,
                    "--http-port", str(port),
                    "--authority", str(authority.root),
                    "--signing-keys", str(keys_dir),
                    *auth_flags,
                ),
                logs / f"backend-{i + 1}.log",
                env={"KANADE_DB": db_url},
            )
            for i, port in enumerate(http_ports)
        ]  # fmt: skip
        children.extend(backends)
        for b in backends:
            b.start()
        agents = _agents(agents_n, data_dir, logs, nats)
        children.extend(agents)
        with httpx.Client(base_url=urls[0], timeout=5.0) as http:
            for url, b in zip(urls, backends, strict=True):
                _wait_until(lambda u=url: httpx.get(f"{u}/health", timeout=2).json().get("broker"),
                            f"{b.name} to be healthy", [b], _READY_TIMEOUT_S)  # fmt: skip
            if admin is not None:
                resp = http.post("/api/auth/login",
                                 json={"username": admin[0], "password": admin[1]})  # fmt: skip
                if resp.status_code != 200:
                    raise CliError(f"admin login failed: {resp.text}")
                http.headers["Authorization"] = f"Bearer {resp.json()['token']}"
            groups = {a.name: ["local", *(["canary"] if a.name == "local-1" else [])]
                      for a in agents}  # fmt: skip
            _add_group_members(http, groups)
            dirs = {a.name: data_dir / "agents" / a.name for a in agents}
            _enrol_and_start(http, urls[0], agents, groups, dirs, authority.ca_file, children)
            loaded = _load_examples(http, examples)
        _summary(time.monotonic() - t0, urls, cluster, pg, authority, agents, loaded,
                 data_dir, admin, moved)  # fmt: skip
        _supervise(children, stop, cluster, pg)
    finally:
        output.err.print("stopping agents, backends, brokers and PostgreSQL …")
        for c in reversed(children):  # agents first (started last), then the backends
            c.signal(signal.SIGTERM)
        for c in reversed(children):
            c.stop(timeout=15)
        cluster.stop()
        pg.stop()
        for s, h in old.items():
            signal.signal(s, h)
        output.err.print("stopped.")


def _free_other(taken: set[int]) -> int:
    while True:
        port = free_port()
        if port not in taken:
            return port


def _agents(n: int, data_dir: Path, logs: Path, nats: str) -> list[Child]:
    agents = []
    for i in range(1, n + 1):
        pc = f"local-{i}"
        home = data_dir / "agents" / pc
        groups = ["local", *(["canary"] if i == 1 else [])]
        agents.append(Child(
            pc,
            _python_module(
                "kanade.agent.cli", "run", "--pc-id", pc,
                *[arg for g in groups for arg in ("--group", g)],
                "--nats-url", nats,  # every node: the agent fails over between them
                "--data-dir", str(home),
                "--keyring", str(home / AGENT_TRUST_DIR / AGENT_KEYRING),
                "--heartbeat-interval", "5",
            ),
            logs / f"{pc}.log",
        ))  # fmt: skip
    return agents


def _adopt_single_broker(
    data_dir: Path, logs: Path, authority: Authority, cluster: BrokerCluster
) -> int:
    """Move a single-broker ``kanade up``'s streams into the cluster (once); how many
    streams were copied."""
    store = data_dir / "nats"
    if not (store / "jetstream").is_dir():
        return 0
    output.err.print(f"moving the single broker's streams ({store}) into the cluster …")
    single = EmbeddedBroker(store, port=_free_other(set()), log_file=logs / "nats-server.log",
                            security=authority.broker_security(), preexec=_DIE_WITH_US)  # fmt: skip
    try:
        single.start()
    except BrokerError as exc:
        raise CliError(f"the single broker's store {store} could not be opened: {exc}") from None
    try:
        copied = asyncio.run(_copy(single.url, cluster.urls, authority))
    finally:
        single.stop()
    kept = data_dir / MIGRATED_STORE
    if kept.exists():
        kept = data_dir / f"{MIGRATED_STORE}-{int(time.time())}"
    store.rename(kept)
    output.err.print(f"moved {copied} stream(s); the single broker's store is kept in {kept}")
    return copied


async def _copy(source: str, dest: list[str], authority: Authority) -> int:
    from kanade.bus.connection import connect
    from kanade.bus.migrate import copy_streams

    creds = BusCredentials(authority.backend_creds, authority.ca_file)
    old = await connect(source, name="kanade-up-migrate", retry_forever=False, deadline=15,
                        credentials=creds)  # fmt: skip
    try:
        new = await connect(dest, name="kanade-up-migrate", retry_forever=False, deadline=15,
                            credentials=creds)  # fmt: skip
        try:
            done = await copy_streams(old, new)
        finally:
            await new.close()
    finally:
        await old.close()
    return sum(1 for d in done if not d.skipped)


def _summary(
    ready_s: float,
    urls: list[str],
    cluster: BrokerCluster,
    pg: EmbeddedPostgres,
    authority: Authority,
    agents: list[Child],
    loaded: list[str],
    data_dir: Path,
    admin: tuple[str, str] | None,
    moved: int,
) -> None:
    out = output.out.print
    out(f"\n[bold green]kanade is up (cluster)[/] in {ready_s:.1f}s")
    for i, url in enumerate(urls, 1):
        out(f"  dashboard {i}     : {url}   (OpenAPI: {url}/api/openapi.json)")
    out(f"  brokers         : {', '.join(cluster.urls)}   (TLS; CA {authority.ca_file})")
    out(f"  database        : PostgreSQL on 127.0.0.1:{pg.port}, database {DATABASE!r}, "
        f"password in {data_dir / 'postgres-password'}")  # fmt: skip
    out(f"  broker admin    : KANADE_NATS_CREDS={authority.operator_creds} "
        f"KANADE_NATS_CA={authority.ca_file} kanade jetstream status "
        f"--nats-url {','.join(cluster.urls)}")  # fmt: skip
    out(f"  agents          : {', '.join(a.name for a in agents) or 'none'}")
    out(f"  example jobs    : {', '.join(loaded) or 'none'}")
    if moved:
        out(f"  moved           : {moved} stream(s) of the single broker into the cluster")
    out(f"  data & logs     : {data_dir}")
    if admin is not None:
        pw_file = data_dir / "admin-password"
        out(f"  auth            : jwt; user {admin[0]!r}, password in {pw_file}")
    out(f"  try             : KANADE_URL={urls[0]} kanade run --all -- 'echo hi'")
    out("Press Ctrl-C to stop everything.")
    sys.stdout.flush()


def _supervise(
    children: list[Child], stop: threading.Event, cluster: BrokerCluster, pg: EmbeddedPostgres
) -> None:
    """Restart whatever dies, saying so: brokers and PostgreSQL first (all need them)."""
    while not stop.wait(0.5):
        for i, node in enumerate(cluster.nodes):
            if not node.is_running():
                output.err.print(f"[yellow]broker {node.server_name} exited; restarting it "
                                 f"(log: {node.log_file})[/]")  # fmt: skip
                try:
                    cluster.start_node(i)
                except BrokerError as exc:
                    output.err.print(f"[red]{node.server_name} did not restart: {exc}[/]")
        if not pg.is_running():
            output.err.print("[yellow]PostgreSQL exited; restarting it[/]")
            try:
                pg.start()
            except RuntimeError as exc:
                output.err.print(f"[red]PostgreSQL did not restart: {exc}[/]")
        for c in children:
            if not c.alive() and c.proc is not None:
                c.restarts += 1
                code = c.proc.returncode
                output.err.print(f"[yellow]{c.name} exited (code {code}); restarting "
                                 f"(restart #{c.restarts}); log: {c.log_path}[/]")  # fmt: skip
                c.stop(timeout=1)
                c.start()
