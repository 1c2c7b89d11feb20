"""Fan-out (kanade.core.notify.fanout): who hears of what, grouped and bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kanade.core.notify.fanout import delivery_id_for, plan
from kanade.core.notify.payloads import MAX_EVENTS

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _hook(wid: str, events: list[str], **kw: Any) -> dict[str, Any]:
    return {"webhook_id": wid, "events": events, "enabled": True, "offline_after_s": 600.0,
            "created_at": T0} | kw  # fmt: skip


def _event(eid: str, kind: str, at: datetime = T0, **kw: Any) -> dict[str, Any]:
    return {"event_id": eid, "kind": kind, "occurred_at": at, "summary": eid,
            "threshold_s": None} | kw  # fmt: skip


def test_a_webhook_hears_only_what_it_subscribes_to_after_it_existed() -> None:
    hooks = [_hook("a", ["exec.failed"]), _hook("b", ["rollout.halted"]),
             _hook("off", ["exec.failed"], enabled=False),
             _hook("new", ["exec.failed"], created_at=T0 + timedelta(hours=1))]  # fmt: skip
    got = plan(hooks, [_event("e1", "exec.failed"), _event("r1", "rollout.halted")])
    assert sorted((p.webhook_id, p.event_ids) for p in got) == [("a", ("e1",)), ("b", ("r1",))]


def test_offline_events_go_to_the_webhook_of_that_threshold() -> None:
    hooks = [_hook("ten", ["agent.offline"]),
             _hook("hour", ["agent.offline"], offline_after_s=3600.0)]  # fmt: skip
    got = plan(hooks, [_event("o1", "agent.offline", threshold_s=3600.0)])
    assert [p.webhook_id for p in got] == ["hour"]


def test_a_burst_is_grouped_per_kind_into_bounded_deliveries() -> None:
    events = [_event(f"o{i:03d}", "agent.offline", threshold_s=600.0) for i in range(120)]
    got = plan([_hook("a", ["agent.offline"])], events)
    assert [len(p.event_ids) for p in got] == [MAX_EVENTS, MAX_EVENTS, 20]
    assert got[0].summary == f"{MAX_EVENTS} agents offline"


def test_a_delivery_id_depends_on_its_webhook_and_events_only() -> None:
    assert delivery_id_for("a", ["x", "y"]) == delivery_id_for("a", ["y", "x"])
    assert delivery_id_for("a", ["x"]) != delivery_id_for("b", ["x"])
