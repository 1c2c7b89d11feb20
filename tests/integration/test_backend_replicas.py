"""Two ``kanade-backend`` replicas on one PostgreSQL database and a 3-node NATS cluster, as
real processes (SPEC §9): each once-per-deployment worker runs on exactly one replica,
a change made through one replica reaches the other's event stream, the projectors share
the results through their durable consumers and write each exactly once, and when the
replica running the deciders dies the other takes them over."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cluster_stack import ClusterStack, EventStream, cluster_stack, wait_for
from kanade.security.authority import Authority
from pgdb import PostgresDatabases

AGENTS = 20
HELLO = {
    "id": "hello",
    "version": "1",
    "execute": {"shell": "sh", "script": "echo hello", "timeout": "30s"},
}


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
            s.replica()
            s.replica()
            s.swarm(AGENTS)
            wait_for(lambda: s.alive_agents(s.replicas[0]) == AGENTS, f"{AGENTS} agents alive")
            yield s
    finally:
        postgres_databases.drop(name)


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


@pytest.mark.slow  # a replica restarted: a process start and a lease TTL
def test_the_deciders_move_when_their_replica_dies(stack: ClusterStack) -> None:
    leader = stack.leader("deciders")
    other = next(r for r in stack.replicas if r is not leader)
    leader.kill()
    try:
        assert stack.leader("deciders") is other  # after the lease TTL (2 s)
        assert other.get("/health")["status"] == "ok"
    finally:
        stack.restart(leader)
    # Back up: it stays a standby, the lease is the other's now.
    assert stack.leader("deciders") is other
