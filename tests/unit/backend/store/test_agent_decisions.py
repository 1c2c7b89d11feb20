"""Agents' schedule decisions in SQL: idempotent, order-independent, counted by each pc's
newest totals (per epoch), pruned without touching the counters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.pool import StaticPool
from store_rows import T0

from kanade.backend.store import agent_decisions, retention
from kanade.backend.store.tables import agent_schedule_decisions, metadata


def report(pc: str, n: int, result: str, totals: dict[str, int], *, epoch: str = "e1",
           schedule: str = "s1") -> dict[str, Any]:  # fmt: skip
    at = T0 + timedelta(seconds=n)
    return {
        "decision_id": f"{pc}:{schedule}@{n}:{result}",
        "schedule_id": schedule,
        "pc_id": pc,
        "occurrence_id": f"{schedule}@{n}",
        "nominal_time": at,
        "decided_at": at,
        "result": result,
        "reason": None,
        "detail": None,
        "count": 1,
        "request_id": None,
        "recorded_at": at,
        "epoch": epoch,
        "totals": {"fired": 0, "skipped": 0, "missed": 0, **totals},
    }


def history(pc: str, results: list[str], *, epoch: str = "e1") -> list[dict[str, Any]]:
    """One pc's reports in the order it made them, each with its running totals."""
    totals = {"fired": 0, "skipped": 0, "missed": 0}
    out = []
    for n, result in enumerate(results):
        totals[result] += 1
        out.append(report(pc, n, result, dict(totals), epoch=epoch))
    return out


_ENGINE = create_engine("sqlite://", poolclass=StaticPool)
metadata.create_all(_ENGINE)


def _engine() -> Engine:
    """The one in-memory database, emptied (creating the schema per example is slow)."""
    with _ENGINE.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    return _ENGINE


def _apply(rows: list[dict[str, Any]], batch: int = 1) -> tuple[Any, ...]:
    eng = _engine()
    for i in range(0, len(rows), batch):
        with eng.begin() as conn:
            agent_decisions.record(conn, rows[i : i + batch], T0)
    with eng.connect() as conn:
        stats = agent_decisions.stats(conn)
        ids = sorted(r[0] for r in conn.execute(select(agent_schedule_decisions.c.decision_id)))
    return stats, ids


RESULTS = st.lists(st.sampled_from(["fired", "skipped", "missed"]), min_size=1, max_size=8)


@settings(max_examples=40, deadline=None)
@given(RESULTS, RESULTS, st.randoms(use_true_random=False), st.integers(1, 4))
def test_any_order_and_any_redelivery_give_the_same_counters(
    a: list[str], b: list[str], rnd: Any, batch: int
) -> None:
    rows = history("pc-a", a) + history("pc-b", b)
    replayed = rows + rnd.sample(rows, k=len(rows) // 2)  # redeliveries
    rnd.shuffle(replayed)
    assert _apply(replayed, batch) == _apply(rows)
    stats, _ = _apply(rows)
    want = {k: a.count(k) + b.count(k) for k in ("fired", "skipped", "missed")}
    assert {k: stats["s1"][k] for k in want} == want
    assert stats["s1"]["pcs"] == 2


def test_a_new_epoch_adds_to_the_old_one() -> None:
    # The agent lost its decision file: it counts from zero again, in a new epoch.
    rows = history("pc-a", ["fired", "fired"]) + history("pc-a", ["fired"], epoch="e2")
    stats, _ = _apply(rows)
    assert stats["s1"]["fired"] == 3


def test_last_fire_is_the_newest_fire() -> None:
    rows = history("pc-a", ["fired", "skipped", "fired", "missed"])
    stats, _ = _apply(rows[::-1])
    assert stats["s1"]["last_fire_at"] == T0 + timedelta(seconds=2)


def test_pruning_keeps_the_newest_decisions_and_every_count() -> None:
    eng = _engine()
    rows = history("pc-a", ["fired"] * 10)
    with eng.begin() as conn:
        agent_decisions.record(conn, rows, T0)
        pruned = retention.prune_log_by_count(conn, "agent_schedule_decisions", keep=3, limit=50)
        assert pruned.rows == 7
        kept = agent_decisions.recent(conn, "s1", limit=10)
        stats = agent_decisions.stats(conn)
    assert [r["occurrence_id"] for r in kept] == ["s1@9", "s1@8", "s1@7"]
    assert stats["s1"]["fired"] == 10
