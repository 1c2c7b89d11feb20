"""Ingest: sustained results per second projected into SQLite or PostgreSQL (SPEC §10.1).

N results (plus their EventStarted) are published into the results stream while
no backend runs; then a backend starts on an empty database and we time how long
its projectors take to turn the whole backlog into rows. That isolates the
projection path (decode, batched UPSERT, counters, commit, ack) from agents.

``store="postgresql"``: one throwaway PostgreSQL server (kanade.pgserver, durable
settings: fsync and synchronous commit on, as a real server) for the whole benchmark,
a fresh database per run, on the same machine as broker and backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
from nats.js.errors import ServiceUnavailableError

from kanade.bench.common import BIN, Proc, emit
from kanade.bench.security import backend_args, probe_credentials, secure_broker
from kanade.bus.broker import EmbeddedBroker, free_port
from kanade.bus.cluster import BrokerCluster
from kanade.bus.connection import MSG_ID_HEADER, connect
from kanade.bus.credentials import BusCredentials
from kanade.bus.retry import retry
from kanade.bus.topology import ensure_topology
from kanade.core import subjects
from kanade.core.ids import new_id, result_id_for
from kanade.core.instants import system_clock
from kanade.core.models.wire import EventStarted, Result, encode
from kanade.core.msgids import result_msg_id, started_msg_id
from kanade.pgserver import EmbeddedPostgres

STORES = ("sqlite", "postgresql")


async def publish_backlog(nats_url: str | list[str], credentials: BusCredentials, n: int,
                          pcs: int = 1000, per_exec: int | None = None) -> None:
    """``n`` results (and their EventStarted) of one exec, or of one exec per ``per_exec``."""
    nc = await connect(nats_url, name="bench-ingest", retry_forever=False,
                       credentials=credentials)
    try:
        js = nc.jetstream()
        # A cluster that just started enables JetStream for the account on first use: a
        # node may answer "JetStream not enabled for account" for a moment (the backend's
        # own set-up retries the same way).
        await retry(lambda: ensure_topology(js), deadline=60.0, base=0.2, cap=2.0,
                    retry_on=(ServiceUnavailableError,))
        exec_id, request_id = new_id(), new_id()
        now = system_clock()
        pending: list[asyncio.Future[object]] = []
        for i in range(n):
            if per_exec and i and i % per_exec == 0:
                exec_id, request_id = new_id(), new_id()
            pc = f"sim-{i % pcs}-{i // pcs}"
            rid = result_id_for(request_id, pc)
            started = EventStarted(result_id=rid, request_id=request_id, exec_id=exec_id,
                                   pc_id=pc, job_id="bench-ingest", version="1",
                                   started_at=now, timeout_s=60)
            result = Result(result_id=rid, request_id=request_id, exec_id=exec_id, pc_id=pc,
                            job_id="bench-ingest", version="1", exit_code=0, stdout="ok\n",
                            stdout_bytes=3, started_at=now,
                            finished_at=now + timedelta(milliseconds=5))
            pending.append(asyncio.ensure_future(js.publish(
                subjects.started_subject(pc), encode(started),
                headers={MSG_ID_HEADER: started_msg_id(rid)})))
            pending.append(asyncio.ensure_future(js.publish(
                subjects.result_subject(pc), encode(result),
                headers={MSG_ID_HEADER: result_msg_id(rid)})))
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await nc.close()


@contextlib.contextmanager
def _databases(store: str) -> Iterator[Iterator[str | None]]:
    """One database per run: None (a SQLite file in the run's temp dir) or a fresh
    PostgreSQL database URL."""
    if store == "sqlite":
        yield iter(lambda: None, object())
        return
    with EmbeddedPostgres(durable=True) as pg:
        yield (pg.create_database(f"ingest{i}") for i in range(1_000_000))


def run(results: int = 20000, runs: int = 3, store: str = "sqlite",
        cluster: bool = False) -> None:
    """``cluster``: a 3-node broker cluster (streams R3) and two backend replicas on one
    PostgreSQL database (SPEC §9) instead of one broker and one backend."""
    if store not in STORES:
        raise SystemExit(f"store {store!r}: choose from {', '.join(STORES)}")
    if cluster and store != "postgresql":
        raise SystemExit("--cluster: backend replicas share a PostgreSQL database "
                         "(--store postgresql)")
    rates, durations = [], []
    with _databases(store) as databases:
        for _ in range(runs):
            db = next(databases)
            rate, duration = _one_run(results, db, replicas=2 if cluster else 1)
            rates.append(rate)
            durations.append(duration)
    params = {"results": results, "messages": results * 2, "store": store,
              "topology": "cluster" if cluster else "single"}
    emit("ingest.rate", params, rates, unit="results/s")
    emit("ingest.backlog_drained", params, durations,
         note="backend launch until every result is a row; includes its start-up")


def _one_run(results: int, db: str | None, replicas: int = 1) -> tuple[float, float]:
    """One backlog drained by fresh backends on ``db``: (results/s, seconds). Two replicas
    run on a 3-node broker cluster; one on a single broker."""
    with tempfile.TemporaryDirectory(prefix="kanade-bench-") as tmp_s:
        tmp = Path(tmp_s)
        brokers = _brokers(tmp, cluster=replicas > 1)
        brokers.start()
        backends: list[Proc] = []
        try:
            asyncio.run(publish_backlog(brokers.urls, probe_credentials(brokers.authority),
                                        results))
            ports = [free_port() for _ in range(replicas)]
            t0 = time.perf_counter()
            for i, port in enumerate(ports):
                backends.append(Proc(
                    [str(BIN / "kanade-backend"), "run", "--nats-url", ",".join(brokers.urls),
                     "--http-port", str(port), *backend_args(brokers.authority, tmp)],
                    # A PostgreSQL URL holds a password: $KANADE_DB, not the command line.
                    tmp / f"backend-{i}.log", env={"KANADE_DB": db or str(tmp / "kanade.db")}))
            url = f"http://127.0.0.1:{ports[0]}"
            deadline = time.monotonic() + 600
            first: tuple[float, int] | None = None  # (time, rows) when projection began
            while True:
                try:
                    total = httpx.get(f"{url}/api/results", params={"limit": 1},
                                      timeout=30).json().get("total", 0)
                except httpx.HTTPError:
                    total = 0
                if total and first is None:
                    first = (time.perf_counter(), total)
                if total >= results:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {total}/{results} rows after 600 s")
                time.sleep(0.02)
            end = time.perf_counter()
            assert first is not None
            # The rate counts from the first projected row, so the backend's own
            # start-up (migrations, connect) is not charged to the projector.
            return (results - first[1]) / max(1e-9, end - first[0]), end - t0
        finally:
            for backend in backends:
                backend.stop()
            brokers.stop()


class _Brokers:
    """One secured broker, or a secured 3-node cluster, under ``base``."""

    def __init__(self, base: Path, *, cluster: bool) -> None:
        broker, self.authority = secure_broker(base)
        self._single: EmbeddedBroker | None = None if cluster else broker
        self._cluster = BrokerCluster(
            base / "cluster", security=self.authority.broker_security(),
            routes=self.authority.route_security(),
        ) if cluster else None

    @property
    def urls(self) -> list[str]:
        if self._cluster is not None:
            return self._cluster.urls
        assert self._single is not None
        return [self._single.url]

    def start(self) -> None:
        if self._cluster is not None:
            self._cluster.start()
        elif self._single is not None:
            self._single.start()

    def stop(self) -> None:
        if self._cluster is not None:
            self._cluster.stop()
        elif self._single is not None:
            self._single.stop()


def _brokers(base: Path, *, cluster: bool) -> _Brokers:
    return _Brokers(base, cluster=cluster)
