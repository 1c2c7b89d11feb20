"""What the schedules API computes (pure): status rows, preview shapes, drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kanade.backend.services.schedule_views import (
    Fleet,
    drift_rows,
    reconcile_due,
    schedule_preview,
    schedule_status,
)
from kanade.backend.store.scheduling import ReconcileFacts
from kanade.core.scheduling import (
    DispatchMark,
    expected_version,
    lower,
    schedule_set_version,
)
from kanade.core.validation import parse_schedule

NOW = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)  # a Monday
BERLIN = ZoneInfo("Europe/Berlin")


def sched(**fields: Any) -> Any:
    doc = {"id": "s", "job_id": "hello", "target": {"all": True}, **fields}
    return parse_schedule(doc, strict=True, known_job_ids={"hello"})


def agent(pc: str, groups: list[str], age_s: float, version: str | None = None) -> dict[str, Any]:
    return {
        "pc_id": pc,
        "groups": groups,
        "last_seen": NOW - timedelta(seconds=age_s),
        "schedule_set_version": version,
    }


def test_status_row_has_next_fire_and_counters() -> None:
    s = sched(when={"calendar": {"at": "10:00", "days": ["mon-fri"]}}, tz="Europe/Berlin")
    stats = {"fired": 4, "skipped": 1, "missed": 2, "last_fire_at": NOW, "last_nominal": NOW}
    row = schedule_status(s, stats, now=NOW, local_tz=UTC, freeze=None)
    assert row["next_fire"] == "2026-03-02T09:00:00Z"  # 10:00 CET
    assert row["next_fire_local"] == "2026-03-02T10:00:00+01:00"
    assert (row["fired_count"], row["skipped_count"], row["missed_count"]) == (4, 1, 2)
    assert row["tz"] == "Europe/Berlin"
    off = sched(when={"calendar": {"at": "10:00"}}, enabled=False)
    assert schedule_status(off, None, now=NOW, local_tz=UTC, freeze=None)["next_fire"] is None


def test_calendar_preview_lists_fires_in_both_zones() -> None:
    s = sched(
        when={"calendar": {"at": "02:30", "days": ["sun"]}},
        tz="Europe/Berlin",
        constraints={"skip_dates": ["2026-03-08"]},
    )
    body = schedule_preview(
        s,
        now=NOW,
        local_tz=UTC,
        n=3,
        freeze=None,
        agents=[agent("pc-1", [], 10)],
        facts=None,
        marks={},
    )
    assert body["shape"] == "calendar"
    assert body["tz"] == "Europe/Berlin"
    assert [f["local"] for f in body["fires"]] == [
        # 03-08 is skipped; 03-29 02:30 does not exist (spring forward): first valid instant
        "2026-03-15T02:30:00+01:00",
        "2026-03-22T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
    ]
    assert body["fires"][0]["utc"] == "2026-03-15T01:30:00Z"
    assert body["pcs"] == []
    assert body["target_pcs"] == ["pc-1"] and body["target_alive"] == ["pc-1"]


def test_per_pc_preview_explains_every_pc() -> None:
    s = sched(when={"per_pc": {"every": "1d"}}, target={"groups": ["web"], "pcs": ["pc-x"]})
    marks = {"pc-3": DispatchMark("pc-3", NOW - timedelta(seconds=5), NOW + timedelta(minutes=2))}
    facts = ReconcileFacts(
        last_success={"pc-2": NOW - timedelta(hours=2), "pc-4": NOW - timedelta(days=2)},
        last_result={"pc-2": NOW - timedelta(hours=2), "pc-4": NOW - timedelta(days=2)},
    )
    agents = [
        agent("pc-1", ["web"], 10),  # alive, never succeeded -> fires
        agent("pc-2", ["web"], 10),  # succeeded 2 h ago -> not again for 22 h
        agent("pc-3", ["web"], 10),  # dispatched, not reported -> held
        agent("pc-4", ["web"], 10),  # succeeded 2 days ago -> fires
        agent("pc-5", ["web"], 3600),  # offline
        agent("pc-6", ["db"], 10),  # not targeted
    ]
    body = schedule_preview(
        s, now=NOW, local_tz=UTC, n=2, freeze=None, agents=agents, facts=facts, marks=marks
    )
    by_pc = {p["pc_id"]: p for p in body["pcs"]}
    assert sorted(by_pc) == ["pc-1", "pc-2", "pc-3", "pc-4", "pc-5", "pc-x"]
    assert {pc: (p["would_fire"], p["reason"]) for pc, p in by_pc.items()} == {
        "pc-1": (True, "never_succeeded"),
        "pc-2": (False, "succeeded_recently"),
        "pc-3": (False, "dispatched"),
        "pc-4": (True, "every_elapsed"),
        "pc-5": (False, "offline"),
        "pc-x": (False, "offline"),  # listed explicitly, never heard from
    }
    assert by_pc["pc-3"]["dispatched_until"] == "2026-03-02T08:32:00Z"
    assert by_pc["pc-2"]["last_success"] == "2026-03-02T06:30:00Z"
    assert by_pc["pc-1"]["alive"] and not by_pc["pc-5"]["alive"]
    assert all(p["detail"] for p in body["pcs"])
    assert [f["utc"] for f in body["fires"]] == ["2026-03-02T08:31:00Z", "2026-03-02T08:32:00Z"]


def test_drift_compares_expected_and_applied_versions() -> None:
    on_agent = sched(
        id="local-1",
        when={"calendar": {"at": "09:00"}},
        runs_on="agent",
        target={"groups": ["web"]},
    )
    backend_only = sched(id="central", when={"calendar": {"at": "09:00"}})
    disabled = sched(id="off", when={"per_pc": "once"}, runs_on="agent", enabled=False)
    schedules = [on_agent, backend_only, disabled]
    good = expected_version(schedules, "pc-1", ["web"])
    assert good == schedule_set_version([on_agent])
    rows = drift_rows(
        schedules,
        [
            agent("pc-1", ["web"], 1, good),
            agent("pc-2", ["web"], 1, None),  # an agent that reports nothing yet
            agent("pc-3", [], 1, schedule_set_version([])),  # nothing targets it: empty set
        ],
    )
    by_pc = {r["pc_id"]: r for r in rows}
    assert not by_pc["pc-1"]["drift"] and by_pc["pc-1"]["expected_schedules"] == ["local-1"]
    assert by_pc["pc-2"]["drift"] and by_pc["pc-2"]["expected_version"] == good
    assert not by_pc["pc-3"]["drift"] and by_pc["pc-3"]["expected_schedules"] == []


def _status_with(
    schedule: Any, facts: ReconcileFacts, agents: list[dict[str, Any]]
) -> dict[str, Any]:
    due = reconcile_due(schedule, lower(schedule), now=NOW, fleet=Fleet.of(agents, NOW),
                        facts=facts, marks={})  # fmt: skip
    return schedule_status(schedule, None, now=NOW, local_tz=UTC, freeze=None, due=due)


def test_per_pc_once_that_every_pc_ran_has_no_next_fire_but_says_why() -> None:
    s = sched(when={"per_pc": "once"})
    agents = [agent("pc-1", [], 10), agent("pc-2", [], 10)]
    done = ReconcileFacts({"pc-1": NOW - timedelta(hours=1), "pc-2": NOW}, {})
    st = _status_with(s, done, agents)
    assert st["next_fire"] is None
    assert st["next_fire_note"].startswith("done: every targeted pc succeeded once")
    one_left = ReconcileFacts({"pc-1": NOW}, {})
    assert _status_with(s, one_left, agents)["next_fire"] == "2026-03-02T08:31:00Z"  # next poll


def test_per_target_every_fires_next_when_the_target_is_due_again() -> None:
    s = sched(when={"per_target": {"every": "1d"}}, target={"groups": ["web"]})
    agents = [agent("pc-1", ["web"], 10), agent("pc-2", ["web"], 10)]
    ran = ReconcileFacts({"pc-2": NOW - timedelta(hours=2)}, {})
    st = _status_with(s, ran, agents)
    assert st["next_fire"] == "2026-03-03T06:30:00Z"  # the first poll at success + 1d
    assert "due again" in st["next_fire_note"]


def test_a_reconcile_schedule_waiting_for_offline_pcs_says_so() -> None:
    s = sched(when={"per_pc": "once"})
    st = _status_with(s, ReconcileFacts({}, {}), [agent("pc-1", [], 3600)])
    assert st["next_fire"] is None and "offline pc(s) fire when they come back" in (
        st["next_fire_note"]
    )
    nobody = _status_with(s, ReconcileFacts({}, {}), [])
    assert nobody["next_fire"] is None and "no targeted pc" in nobody["next_fire_note"]


def test_a_disabled_schedule_previews_its_fires_marked_disabled() -> None:
    s = sched(when={"calendar": {"at": "10:00"}}, enabled=False)
    body = schedule_preview(s, now=NOW, local_tz=UTC, n=2, freeze=None, agents=[],
                            facts=None, marks={})  # fmt: skip
    assert [f["utc"] for f in body["fires"]] == ["2026-03-02T10:00:00Z", "2026-03-03T10:00:00Z"]
    assert all(f["disabled"] for f in body["fires"])
