"""The agents table: heartbeat UPSERTs and liveness in SQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from store_rows import T0

from kanade.backend.store import agents
from kanade.core.fleet import ALIVE_WINDOW, STALE_WINDOW, agent_status

TICK = timedelta(microseconds=1)
# Ages on and around both window edges, plus the future (a receiver clock stepped back).
AGES = [
    -timedelta(minutes=1), timedelta(0), ALIVE_WINDOW - TICK, ALIVE_WINDOW, ALIVE_WINDOW + TICK,
    STALE_WINDOW - TICK, STALE_WINDOW, STALE_WINDOW + TICK, timedelta(days=3),
]  # fmt: skip


def heartbeat(pc_id: str, seen: datetime) -> dict[str, Any]:
    return {
        "pc_id": pc_id, "hostname": pc_id, "agent_version": "1", "os_family": "linux",
        "os_version": "", "boot_time": None, "cpu_percent": 0.0, "rss_bytes": 1,
        "groups": [], "schedule_set_version": None, "last_command_at": None,
        "queue_length": 0, "running": 0, "last_seen": seen, "first_seen": seen,
        "disk_full": False, "disk_error": None, "disk_free_bytes": None, "held_messages": 0,
    }  # fmt: skip


def test_sql_liveness_is_the_python_rule_at_every_edge(engine: Engine) -> None:
    now = T0 + timedelta(days=1)
    with engine.begin() as conn:
        agents.upsert_agents(conn, [heartbeat(f"pc{i}", now - age) for i, age in enumerate(AGES)])
    expected = {f"pc{i}": agent_status(now - age, now) for i, age in enumerate(AGES)}
    with engine.connect() as conn:
        by_status = {
            status: {r["pc_id"] for r in agents.page_agents(conn, now=now, status=status).items}
            for status in agents.LIVENESS
        }
        counts = agents.count_by_liveness(conn, now)
        alive = {pc for pc, _ in agents.alive_agents(conn, now)}
    for status in agents.LIVENESS:
        assert by_status[status] == {pc for pc, s in expected.items() if s == status}
        assert counts[status] == len(by_status[status])
    assert alive == by_status["alive"]
    assert sum(counts.values()) == len(AGES)


def test_a_cleanly_stopped_agent_is_offline_at_once_in_sql_too(engine: Engine) -> None:
    now = T0 + timedelta(days=1)
    rows = [
        {**heartbeat(f"pc{i}", now - age), "stopped_at": None if i % 2 else now - age}
        for i, age in enumerate(AGES)
    ]
    with engine.begin() as conn:
        agents.upsert_agents(conn, rows)
    expected = {
        r["pc_id"]: agent_status(r["last_seen"], now, stopped=r["stopped_at"] is not None)
        for r in rows
    }
    with engine.connect() as conn:
        by_status = {
            status: {r["pc_id"] for r in agents.page_agents(conn, now=now, status=status).items}
            for status in agents.LIVENESS
        }
        alive = {pc for pc, _ in agents.alive_agents(conn, now)}
    for status in agents.LIVENESS:
        assert by_status[status] == {pc for pc, s in expected.items() if s == status}
    assert alive == by_status["alive"] and "pc0" not in alive  # stopped a moment ago
    # its next heartbeat (no stopping flag, received after the stopping one) makes it
    # alive again
    with engine.begin() as conn:
        later = now - AGES[0] + TICK
        agents.upsert_agents(conn, [{**heartbeat("pc0", later), "stopped_at": None}])
        assert "pc0" in {pc for pc, _ in agents.alive_agents(conn, now)}


def test_an_older_heartbeat_never_overwrites_a_newer_one(engine: Engine) -> None:
    # Backend replicas share the heartbeats and flush them on their own: a replica whose
    # database was away flushes a heartbeat after another replica wrote a newer one.
    now = T0 + timedelta(days=1)
    with engine.begin() as conn:
        agents.upsert_agents(conn, [{**heartbeat("pc1", now), "running": 2}])
        agents.upsert_agents(conn, [{**heartbeat("pc1", now - TICK), "running": 1,
                                     "stopped_at": now - TICK}])  # fmt: skip
        got = agents.get_agent(conn, "pc1")
    assert got is not None
    assert (got["last_seen"], got["running"], got["stopped_at"]) == (now, 2, None)


def test_agents_upsert_keeps_first_seen(engine: Engine) -> None:
    def hb(at: datetime, version: str) -> dict[str, Any]:
        return {
            "pc_id": "pc1", "hostname": "h", "agent_version": version, "os_family": "linux",
            "os_version": "", "boot_time": None, "cpu_percent": 0.5, "rss_bytes": 1,
            "groups": ["web"], "schedule_set_version": None, "last_command_at": None,
            "queue_length": 0, "running": 0, "last_seen": at, "first_seen": at,
        }  # fmt: skip

    with engine.begin() as conn:
        agents.upsert_agents(conn, [hb(T0, "0.1")])
        agents.upsert_agents(conn, [hb(T0 + timedelta(minutes=1), "0.2")])
    with engine.connect() as conn:
        (agent,) = agents.list_agents(conn)
        alive = agents.alive_agents(conn, T0 + timedelta(minutes=2, seconds=30))
    assert (agent["first_seen"], agent["last_seen"]) == (T0, T0 + timedelta(minutes=1))
    assert agent["agent_version"] == "0.2"
    assert alive == [("pc1", ["web"])]


def test_descriptive_text_is_cut_to_its_column_not_refused(engine: Engine) -> None:
    # PostgreSQL enforces VARCHAR lengths (SQLite never does): a long hostname or OS
    # version must not make the heartbeat batch fail.
    hb = heartbeat("pc1", T0) | {"hostname": "h" * 300, "os_version": "v\x00" * 200}
    with engine.begin() as conn:
        agents.upsert_agents(conn, [hb])
        got = agents.get_agent(conn, "pc1")
    assert got is not None
    assert got["hostname"] == "h" * 255
    assert got["os_version"] == ("v\ufffd" * 200)[:255]


def test_disk_trouble_counts_alive_agents_only(engine: Engine) -> None:
    now = T0 + timedelta(days=1)
    rows = [
        {**heartbeat("full-alive", now), "disk_full": True, "disk_error": "No space left on device",
         "disk_free_bytes": 0, "held_messages": 3},
        {**heartbeat("full-offline", now - STALE_WINDOW - TICK), "disk_full": True,
         "held_messages": 7},
        {**heartbeat("fine", now), "disk_free_bytes": 10**9},
    ]  # fmt: skip
    with engine.begin() as conn:
        agents.upsert_agents(conn, rows)
    with engine.connect() as conn:
        assert agents.disk_trouble(conn, now) == (1, 3)
        row = agents.get_agent(conn, "full-alive")
        fine = agents.get_agent(conn, "fine")
    assert row is not None and fine is not None
    assert (row["disk_full"], row["disk_error"], row["disk_free_bytes"]) == (
        True, "No space left on device", 0)  # fmt: skip
    assert (fine["disk_full"], fine["held_messages"], fine["disk_free_bytes"]) == (False, 0, 10**9)


def test_names_the_known_pcs_and_groups_and_keeps_what_the_agent_started_with(
    engine: Engine,
) -> None:
    web = {**heartbeat("pc-1", T0), "groups": ["local", "web"], "static_groups": ["local"],
           "local_config": {"heartbeat_interval": 5.0}}  # fmt: skip
    with engine.begin() as conn:
        db = {**heartbeat("pc-2", T0), "groups": ["db"], "static_groups": None,
              "local_config": None}  # fmt: skip
        agents.upsert_agents(conn, [web, db])
    with engine.connect() as conn:
        assert agents.existing(conn, ["pc-1", "nosuch"]) == {"pc-1"}
        assert agents.existing(conn, []) == set()
        assert agents.reported_groups(conn) == {"local", "web", "db"}
        assert agents.names(conn) == ({"pc-1", "pc-2"}, {"local", "web", "db"})
        row = agents.get_agent(conn, "pc-1")
    assert row is not None and row["local_config"] == {"heartbeat_interval": 5.0}
    assert row["static_groups"] == ["local"]
