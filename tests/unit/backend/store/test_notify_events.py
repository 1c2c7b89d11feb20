"""Notification events in SQL (kanade.backend.store.notify_events), on real SQLite files:
each source is read past a cursor in (time, key) order, a fact is recorded once, and
fan-out makes each webhook's deliveries once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, select
from test_rollouts import _create

from kanade.backend.store import agent_decisions, agents, notify_events, scheduling
from kanade.backend.store.notify_events import Cursor
from kanade.backend.store.scheduling import DecisionRow
from kanade.backend.store.tables import notify_deliveries
from kanade.core.notify import events as ev
from notify_rows import T0, add_webhook, failed_exec, halt

LATER = T0 + timedelta(hours=1)


def test_failed_execs_are_read_past_the_cursor_with_their_failed_pcs(engine: Engine) -> None:
    with engine.begin() as conn:
        failed_exec(conn, "e1", T0 + timedelta(seconds=1))
        failed_exec(conn, "e2", T0 + timedelta(seconds=2), failing=2)
        failed_exec(conn, "ok", T0 + timedelta(seconds=3), failing=0)
        rows = notify_events.failed_execs(conn, Cursor(T0), LATER, limit=10)
        assert [r["exec_id"] for r in rows] == ["e1", "e2"]
        first = Cursor(rows[0]["updated_at"], "e1")
        assert [r["exec_id"] for r in notify_events.failed_execs(conn, first, LATER, 10)] == ["e2"]
        assert notify_events.failed_pcs(conn, ["e1", "e2"], 5) == {
            "e1": ["pc-a"], "e2": ["pc-a", "pc-b"]
        }  # fmt: skip
        assert notify_events.failed_execs(conn, Cursor(T0), T0, limit=10) == []  # not yet


def test_skipped_and_missed_fires_of_both_schedulers_are_read(engine: Engine) -> None:
    at = T0 + timedelta(seconds=5)
    with engine.begin() as conn:
        scheduling.record_decisions(
            conn,
            [DecisionRow("s1", "s1@1", T0, "fired", None, "ok", exec_id="x", pcs=1),
             DecisionRow("s1", "s1@2", T0, "skipped", "frozen", "fleet frozen"),
             DecisionRow("s1", "s1@3", T0, "missed", "catchup_skip", "2", count=2)],
            at,
        )  # fmt: skip
        central = notify_events.central_decisions(conn, Cursor(T0), LATER, 10)
        assert [(r["occurrence_id"], r["result"]) for r in central] == [
            ("s1@2", "skipped"), ("s1@3", "missed")
        ]  # fmt: skip
        resume = Cursor(central[0]["decided_at"], str(central[0]["id"]))
        assert len(notify_events.central_decisions(conn, resume, LATER, 10)) == 1
        agent_decisions.record(
            conn,
            [{"decision_id": f"{pc}:a@1:skipped", "schedule_id": "a", "pc_id": pc,
              "occurrence_id": "a@1", "nominal_time": T0, "decided_at": T0, "result": "skipped",
              "reason": "outside_window", "detail": None, "count": 1, "request_id": None,
              "recorded_at": at, "epoch": "e",
              "totals": {"fired": 0, "skipped": 1, "missed": 0}}
             for pc in ("pc-1", "pc-2")],
            at,
        )  # fmt: skip
        got = notify_events.agent_decisions(conn, Cursor(T0), LATER, 10)
        assert sorted(r["pc_id"] for r in got) == ["pc-1", "pc-2"]


def test_silent_agents_and_halted_rollouts_are_read(engine: Engine) -> None:
    with engine.begin() as conn:
        agents.upsert_agents(
            conn,
            [{"pc_id": pc, "hostname": pc, "groups": [], "last_seen": T0 + timedelta(seconds=i),
              "first_seen": T0} for i, pc in enumerate(["pc-1", "pc-2"])],
        )  # fmt: skip
        silent = notify_events.silent_agents(conn, Cursor(T0), T0 + timedelta(seconds=1), 10)
        assert [r["pc_id"] for r in silent] == ["pc-1", "pc-2"]
        after_first = notify_events.silent_agents(conn, Cursor(T0, "pc-1"), LATER, 10)
        assert [r["pc_id"] for r in after_first] == ["pc-2"]
    _create(engine, "r1")
    with engine.begin() as conn:
        halt(conn, "r1", T0 + timedelta(seconds=9))
        [halted] = notify_events.halted_rollouts(conn, Cursor(T0), LATER, 10)
        assert halted["rollout_id"] == "r1" and halted["current_wave"] == 1
        assert "failure_rate" in halted


def _offline(pc: str) -> ev.Event:
    return ev.agent_offline(pc_id=pc, hostname=pc, last_seen=T0, stopped=False,
                            threshold=timedelta(minutes=10))  # fmt: skip


def test_a_fact_is_recorded_once_and_fanned_out_once(engine: Engine) -> None:
    with engine.begin() as conn:
        add_webhook(conn, "ops")
        add_webhook(conn, "late", created_at=LATER)  # did not exist when it happened
        assert notify_events.record_events(conn, [_offline("pc-1"), _offline("pc-2")], T0) == 2
        assert notify_events.record_events(conn, [_offline("pc-1")], T0) == 0
        assert notify_events.fan_out(conn, T0, limit=100) == 2
        assert notify_events.fan_out(conn, T0, limit=100) == 0
        rows = list(conn.execute(select(notify_deliveries)).mappings())
    assert [(r["webhook_id"], len(r["event_ids"]), r["status"]) for r in rows] == [
        ("ops", 2, "pending")
    ]
    assert rows[0]["summary"] == "2 agents offline"


def test_old_fanned_out_events_are_pruned_in_batches(engine: Engine) -> None:
    with engine.begin() as conn:
        notify_events.record_events(conn, [_offline(f"pc-{i}") for i in range(5)], T0)
        assert notify_events.prune_events(conn, LATER, limit=10) == 0  # not fanned out yet
        notify_events.fan_out(conn, T0, limit=100)
        assert notify_events.prune_events(conn, LATER, limit=3) == 3
        assert notify_events.prune_events(conn, LATER, limit=3) == 2
        assert notify_events.prune_events(conn, T0, limit=3) == 0
