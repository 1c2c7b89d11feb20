"""Two backend replicas (SPEC §9), a real browser on replica B: an exec started through
replica A appears on B's executions page and turns completed by itself — A's API call and
the results (projected by either replica) reach B's page over its own event stream, with
no reload (the marker on ``window`` survives) and well before the page's 60 s fallback
refresh could have done it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from cluster_stack import ClusterStack, cluster_stack, wait_for
from kanade.security.authority import Authority
from pgdb import PostgresDatabases

JOB = {"id": "replica-live", "version": "1",
       "execute": {"shell": "sh", "script": "true", "timeout": "30s"}}  # fmt: skip
AGENTS = 3


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory,
    authority: Authority,
    postgres_databases: PostgresDatabases,
) -> Iterator[ClusterStack]:
    name, url = postgres_databases.create(migrated=False)
    try:
        with cluster_stack(tmp_path_factory.mktemp("replicas-live"), authority, url) as s:
            s.replica()
            s.replica()
            s.swarm(AGENTS, prefix="live-")
            wait_for(lambda: s.alive_agents(s.replicas[1]) == AGENTS, "agents alive")
            assert s.replicas[0].post("/api/jobs", JOB).status_code == 201
            yield s
    finally:
        postgres_databases.drop(name)


def test_an_exec_through_replica_a_shows_live_on_replica_b(
    page: Page, replicas: ClusterStack
) -> None:
    a, b = replicas.replicas
    page.goto(f"{b.url}/#/executions")
    page.wait_for_selector(".page[data-ready], .page h1")
    expect(page.locator("#live-status")).to_have_text("Live")
    page.evaluate("window.__noReload = 'still-here'")
    rows = page.locator("table[aria-label='Executions'] tbody tr[data-exec-id]")
    before = set(rows.evaluate_all("rs => rs.map(r => r.dataset.execId)"))

    created = a.post("/api/exec/replica-live", {"target": {"all": True}})
    assert created.status_code == 201, created.text
    exec_id = created.json()["exec_id"]
    assert exec_id not in before
    row = page.locator(f"table[aria-label='Executions'] tbody tr[data-exec-id='{exec_id}']")
    expect(row).to_have_count(1, timeout=15_000)
    expect(row.locator(".pill")).to_have_text("completed", timeout=20_000)
    assert page.evaluate("window.__noReload") == "still-here", "the page was reloaded"
