"""Two ``kanade-backend`` replicas on one PostgreSQL database and a 3-node NATS cluster, as
real processes (SPEC §9): each once-per-deployment worker runs on exactly one replica —
retention and the notification sender too —, a change made through one replica reaches the
other's event stream, the projectors share the results through their durable consumers and
write each exactly once, and when the replica running the deciders dies the other takes
them over, notifications and retention included."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from agent_harness import AgentFleet
from test_live_output import SseReader, gated

from cluster_stack import ClusterStack, EventStream, Replica, cluster_stack, wait_for
from kanade.backend.store.database import create_engine
from kanade.core.instants import system_clock
from kanade.security.authority import Authority
from notify_rows import failed_exec
from pgdb import PostgresDatabases
from webhook_receiver import Receiver, receiving

AGENTS = 20
HELLO = {
    "id": "hello",
    "version": "1",
    "execute": {"shell": "sh", "script": "echo hello", "timeout": "30s"},
}
SECRET = "replicas-secret-" + "r" * 20
# Retention passes every second, notifications scanned and retried quickly: a test sees
# which replica runs them in seconds.
FAST = ("--retain", "interval=1s", "--notify-scan", "0.2", "--notify-retry", "0.3s")


# PostgreSQL only: replicas share one database, which SQLite (one writer process) is not
# built for (docs/store.md).
@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    authority: Authority,
    postgres_databases: PostgresDatabases,
) -> Iterator[ClusterStack]:
    name, url = postgres_databases.create(migrated=False)
    base = tmp_path_factory.mktemp("replicas")
    try:
        with cluster_stack(base, authority, url) as s:
            s.replica(*FAST)
            s.replica(*FAST)
            s.swarm(AGENTS)
            wait_for(lambda: s.alive_agents(s.replicas[0]) == AGENTS, f"{AGENTS} agents alive")
            yield s
    finally:
        postgres_databases.drop(name)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    yield from receiving()


def test_each_singleton_runs_on_exactly_one_replica(stack: ClusterStack) -> None:
    for role in ("scheduler", "deciders"):
        stack.leader(role)
    names = {r.get("/health")["replica"] for r in stack.replicas}
    assert len(names) == 2


def test_a_change_through_one_replica_reaches_the_others_event_stream(
    stack: ClusterStack,
) -> None:
    a, b = stack.replicas
    events = EventStream(b.url).start()
    try:
        assert a.post("/api/jobs", HELLO).status_code in (201, 200)
        wait_for(lambda: "jobs" in events.topics, "B's stream told of the job A stored", 15)
        # and B serves it: one database
        assert b.get("/api/jobs/hello")["id"] == "hello"
    finally:
        events.close()


def test_the_replicas_project_every_result_exactly_once(stack: ClusterStack) -> None:
    a, b = stack.replicas
    if a.post("/api/jobs", HELLO).status_code >= 400:
        assert b.get("/api/jobs/hello")["id"] == "hello"
    exec_ids = []
    for replica in (a, b, a, b):  # execs through both replicas
        resp = replica.post("/api/exec/hello", {"target": {"all": True}})
        assert resp.status_code == 201, resp.text
        exec_ids.append(resp.json()["exec_id"])

    def completed() -> bool:
        return all(a.get(f"/api/executions/{e}", results="false")["status"] == "completed"
                   for e in exec_ids)  # fmt: skip

    wait_for(completed, "every exec completed", 60)
    for exec_id in exec_ids:
        detail = b.get(f"/api/executions/{exec_id}")
        assert (detail["expected_count"], detail["finished_count"], detail["failed_count"]) == (
            AGENTS, AGENTS, 0)  # fmt: skip
        pcs = [r["pc_id"] for r in detail["results"]]
        assert len(pcs) == len(set(pcs)) == AGENTS
        assert all(r["attempts"] == 1 for r in detail["results"])
    # Both replicas pulled from the one durable consumer: together, each result once.
    projected = [_projected(r.get_text("/metrics")) for r in (a, b)]
    assert sum(projected) >= AGENTS * len(exec_ids)


def _projected(metrics: str) -> float:
    """Results (and started events) this replica projected."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("kanade_projected_messages_total") and 'consumer="results"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _broker_ports(replica: Replica) -> set[int]:
    """The ports of the broker nodes this replica's process is connected to now."""
    assert replica.proc is not None
    conns = psutil.Process(replica.proc.pid).net_connections(kind="tcp")
    return {c.raddr.port for c in conns if c.raddr}


def test_live_output_reaches_a_watcher_on_the_other_replica(
    stack: ClusterStack, tmp_path: Path
) -> None:
    # The agent on a node replica B is not connected to, the exec started through A, the
    # watcher on B: the chunks cross the cluster's routes, B renews the watch lease, and B
    # sees the end from the database whichever replica projected the result.
    a, b = stack.replicas
    ports = {urlsplit(u).port: u for u in stack.brokers.urls}
    b_nodes = _broker_ports(b) & ports.keys()
    assert b_nodes, "replica B is connected to a node"
    url = next(u for p, u in ports.items() if p not in b_nodes)
    fleet = AgentFleet(tmp_path / "agents", url, stack.authority)
    try:
        fleet.add("live-1")
        wait_for(lambda: [x for x in b.get("/api/agents", status="alive", limit=1000)["items"]
                          if x["pc_id"] == "live-1"], "the agent alive", 40)  # fmt: skip
        stop = tmp_path / "stop"
        created = a.post("/api/run", {"script": gated("far", stop), "target": {"pcs": ["live-1"]}})
        assert created.status_code == 201, created.text
        exec_id = created.json()["exec_id"]
        sse = SseReader(b.url, f"/api/executions/{exec_id}/live").start()
        wait_for(lambda: "far-3" in sse.text(), "far-3 live on B", 30)
        assert "end" not in sse.names()  # seen while the script still runs
        stop.touch()
        wait_for(lambda: "end" in sse.names(), "the stream ended on B", 30)
    finally:
        fleet.close()
    assert sse.text() == "".join(f"far-{i}\n" for i in range(1, 5))
    assert sse.events[-1] == ("end", {"exec_id": exec_id, "status": "completed"})


def _metric(replica: Replica, name: str, label: str) -> float:
    m = re.search(rf"^{name}\{{{label}\}} (\S+)$", replica.get_text("/metrics"), re.M)
    return float(m.group(1)) if m else 0.0


def _retention_runs(replica: Replica) -> float:
    return _metric(replica, "kanade_retention_runs_total", 'outcome="ok"')


def _delivered(replica: Replica) -> float:
    return _metric(replica, "kanade_notify_attempts_total", 'outcome="delivered"')


def _subscribe(stack: ClusterStack, receiver: Receiver) -> None:
    """A webhook for failed execs, added through any replica (once per module)."""
    r = stack.replicas[-1].post("/api/notify/webhooks", {
        "id": "ops", "url": receiver.url, "secret": SECRET, "events": ["exec.failed"]})  # fmt: skip
    assert r.status_code in (201, 409), r.text


def _exec_fails(stack: ClusterStack, exec_id: str) -> None:
    """An exec that failed on one of its two pcs, as the projector leaves it (written to the
    shared database directly: the swarm's stub scripts never fail)."""
    engine = create_engine(stack.db_url)
    try:
        with engine.begin() as conn:
            failed_exec(conn, exec_id, system_clock())
    finally:
        engine.dispose()


def _told(receiver: Receiver, exec_id: str) -> list[str]:
    """Idempotency keys of the accepted deliveries telling of ``exec_id``."""
    return [r.key for r in receiver.accepted() if exec_id.encode() in r.body]


def test_notifications_and_retention_run_on_the_deciders_replica_alone(
    stack: ClusterStack, receiver: Receiver
) -> None:
    leader = stack.leader("deciders")
    other = next(r for r in stack.replicas if r is not leader)
    _subscribe(stack, receiver)
    _exec_fails(stack, "failed-1")
    keys = wait_for(lambda: _told(receiver, "failed-1"), "the failed exec told", 30)
    wait_for(lambda: _retention_runs(leader) >= 2, "retention passes on the leader", 30)
    assert len(keys) == 1, keys  # one delivery, sent once
    assert _delivered(leader) >= 1 and _delivered(other) == 0
    assert _retention_runs(other) == 0
    # Both replicas say what the one pass did: its record is in the shared database.
    assert other.get("/api/retention")["last_run"] is not None


@pytest.mark.slow  # a replica restarted: a process start and a lease TTL
def test_the_deciders_move_when_their_replica_dies(
    stack: ClusterStack, receiver: Receiver
) -> None:
    leader = stack.leader("deciders")
    other = next(r for r in stack.replicas if r is not leader)
    _subscribe(stack, receiver)
    runs_before = _retention_runs(other)
    leader.kill()
    try:
        assert stack.leader("deciders") is other  # after the lease TTL (2 s)
        assert other.get("/health")["status"] == "ok"
        # The team moved whole: the new leader prunes and tells of a failure after the kill.
        wait_for(lambda: _retention_runs(other) > runs_before, "retention on the new leader")
        _exec_fails(stack, "failed-after-kill")
        wait_for(lambda: _told(receiver, "failed-after-kill"), "told by the new leader", 30)
        assert _delivered(other) >= 1
    finally:
        stack.restart(leader)
    # Back up: it stays a standby, the lease is the other's now.
    assert stack.leader("deciders") is other
    assert _retention_runs(leader) == 0  # a standby: its passes never started
    keys = Counter(r.key for r in receiver.accepted())
    assert all(n == 1 for n in keys.values()), keys  # nothing told twice across the move
