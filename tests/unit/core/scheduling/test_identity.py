"""Occurrence identity, schedule-set version and preview (SPEC §3.6, §4.4)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kanade.core.models.schedule import Schedule
from kanade.core.scheduling import (
    DispatchMark,
    Freeze,
    agent_schedule_set,
    exec_id_for,
    expected_version,
    lower,
    occurrence_id,
    parse_occurrence_id,
    preview,
    request_id_for,
    schedule_set_version,
)
from kanade.core.validation import parse_schedule

NY = ZoneInfo("America/New_York")
FAR = ZoneInfo("Pacific/Kiritimati")
NOW = datetime(2025, 3, 8, 12, 0, tzinfo=UTC)


def doc(sid: str = "s1", **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": sid,
        "job_id": "j1",
        "when": {"calendar": {"at": "02:30", "days": ["mon-fri"]}},
        "target": {"groups": ["servers"]},
        "runs_on": "agent",
        "tz": "America/New_York",
    }
    data.update(extra)
    return data


# --- occurrence ids ------------------------------------------------------------------------
def test_occurrence_id_format_and_parse() -> None:
    nominal = datetime(2025, 3, 9, 3, 0, tzinfo=NY)  # = 07:00Z
    occ = occurrence_id("nightly", nominal)
    assert occ == "sched:nightly:2025-03-09T07:00:00Z"
    assert parse_occurrence_id(occ) == ("nightly", datetime(2025, 3, 9, 7, 0, tzinfo=UTC))
    sub = occurrence_id("n", datetime(2025, 1, 1, 0, 0, 0, 1500, tzinfo=UTC))
    assert sub == "sched:n:2025-01-01T00:00:00.001500Z"
    assert parse_occurrence_id(sub)[1].microsecond == 1500


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sched:",
        "sched:a",
        "job:a:2025-01-01T00:00:00Z",
        "sched:a b:2025-01-01T00:00:00Z",
        "sched:a:2025-01-01T00:00:00",
        "sched:a:2025-13-01T00:00:00Z",
        "sched:a:2025-01-01T00:00:00.000000Z",  # not canonical
    ],
)
def test_bad_occurrence_ids(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_occurrence_id(bad)


def test_occurrence_id_needs_aware_time_and_slug() -> None:
    with pytest.raises(ValueError):
        occurrence_id("s1", datetime(2025, 1, 1))
    with pytest.raises(ValueError):
        occurrence_id("has:colon", NOW)


def test_derived_ids_are_deterministic_and_distinct() -> None:
    occ = occurrence_id("s1", NOW)
    whole = request_id_for(occ)
    per_pc = request_id_for(occ, "pc1")
    assert whole == request_id_for(occ)
    assert per_pc == request_id_for(occ, "pc1")
    assert len({whole, per_pc, request_id_for(occ, "pc2"), exec_id_for(occ)}) == 4
    assert all(len(x) == 32 and int(x, 16) >= 0 for x in (whole, per_pc, exec_id_for(occ)))
    later = occurrence_id("s1", NOW + timedelta(minutes=1))
    assert request_id_for(later, "pc1") != per_pc and exec_id_for(later) != exec_id_for(occ)
    # a pc literally named "*" cannot collide with the whole-target id
    assert request_id_for(occ, "*") != whole


# --- schedule-set version ------------------------------------------------------------------
def test_version_is_order_independent_and_changes_with_fields() -> None:
    a = parse_schedule(doc("a"))
    b = parse_schedule(doc("b", when={"cron": "0 * * * *"}))
    base = schedule_set_version([a, b])
    assert base == schedule_set_version([b, a])
    assert base.startswith("v1:") and len(base) == 35
    assert schedule_set_version([]) == schedule_set_version(())
    assert schedule_set_version([a]) != base
    changes: list[dict[str, Any]] = [
        {"when": {"calendar": {"at": "02:31", "days": ["mon-fri"]}}},
        {"tz": "Europe/Berlin"},
        {"target": {"groups": ["servers", "db"]}},
        {"jitter": "5s"},
        {"catchup": "skip"},
        {"starting_deadline": "1m"},
        {"constraints": {"window": "01:00-05:00"}},
        {"active": {"from": "2025-01-01"}},
        {"job_id": "j2"},
        {"on_failure": {"retry": {"max": 2}}},
    ]
    for change in changes:
        changed = parse_schedule(doc("a", **change))
        assert schedule_set_version([changed, b]) != base, change


def test_version_ignores_spelling_defaults_description_and_extras() -> None:
    a = parse_schedule(doc("a"))
    same = [
        doc("a", description="nightly report"),
        doc("a", enabled=True, catchup="once", jitter="0s"),
        doc("a", when={"calendar": {"at": "02:30", "days": "mon-fri"}}),
    ]
    for data in same:
        assert schedule_set_version([parse_schedule(data)]) == schedule_set_version([a]), data
    ninety = parse_schedule(doc("a", starting_deadline="90m"))
    hour_half = parse_schedule(doc("a", starting_deadline="1h30m"))
    assert schedule_set_version([ninety]) == schedule_set_version([hour_half])
    extra = copy.deepcopy(doc("a"))
    extra["future_field"] = {"x": 1}
    extra["when"]["calendar"]["future"] = True
    tolerant = parse_schedule(extra, strict=False)
    kept_extras = Schedule.model_validate(extra)
    assert kept_extras.model_extra  # the model kept it...
    assert schedule_set_version([kept_extras]) == schedule_set_version([a])  # ...the hash not
    assert schedule_set_version([tolerant]) == schedule_set_version([a])


def test_agent_schedule_set_and_expected_version() -> None:
    mine = parse_schedule(doc("mine"))
    by_pc = parse_schedule(doc("by-pc", target={"pcs": ["pc1"]}))
    backend = parse_schedule(doc("backend", runs_on="backend"))
    disabled = parse_schedule(doc("off", enabled=False))
    other = parse_schedule(doc("other", target={"groups": ["desktops"]}))
    everything = [other, disabled, backend, by_pc, mine]
    chosen = agent_schedule_set(everything, "pc1", ["servers"])
    assert [s.id for s in chosen] == ["by-pc", "mine"]
    assert expected_version(everything, "pc1", ["servers"]) == schedule_set_version([mine, by_pc])
    assert expected_version(everything, "pc2", []) == schedule_set_version([])


# --- preview -------------------------------------------------------------------------------
def test_preview_calendar_in_tz_and_utc() -> None:
    plan = lower(parse_schedule(doc("a", when={"calendar": {"at": "02:30"}})))
    got = preview(plan, now=NOW, local_tz=FAR, n=3)
    assert got.tz == "America/New_York"
    assert [f.to_dict() for f in got.fires] == [
        {"utc": "2025-03-09T07:00:00Z", "local": "2025-03-09T03:00:00-04:00"},
        {"utc": "2025-03-10T06:30:00Z", "local": "2025-03-10T02:30:00-04:00"},
        {"utc": "2025-03-11T06:30:00Z", "local": "2025-03-11T02:30:00-04:00"},
    ]
    assert got.pcs == () and got.gate is None and got.warnings == ()


def test_preview_local_zone_and_warnings() -> None:
    past = lower(
        parse_schedule(doc("a", tz="local", when={"calendar": {"at": "2020-01-01 00:00"}}))
    )
    got = preview(past, now=NOW, local_tz=ZoneInfo("Asia/Kolkata"))
    assert got.tz == "Asia/Kolkata" and got.fires == ()
    assert any("past" in w for w in got.warnings)
    off = lower(parse_schedule(doc("a", enabled=False)))
    assert any("disabled" in w for w in preview(off, now=NOW, local_tz=FAR).warnings)


def test_preview_per_pc_reasons() -> None:
    plan = lower(parse_schedule(doc("a", when={"per_pc": {"every": "1h"}}, tz="utc")))
    got = preview(
        plan,
        now=NOW,
        local_tz=FAR,
        n=2,
        pcs=["pc1", "pc2", "pc3", "pc4"],
        alive={"pc1", "pc2", "pc3"},
        last_success={"pc2": NOW - timedelta(minutes=5)},
        marks={"pc3": DispatchMark("pc3", NOW - timedelta(minutes=1), NOW + timedelta(minutes=3))},
    )
    assert [f.utc for f in got.fires] == [NOW + timedelta(minutes=1), NOW + timedelta(minutes=2)]
    body = got.to_dict()
    assert [(p["pc_id"], p["would_fire"], p["reason"]) for p in body["pcs"]] == [
        ("pc1", True, "never_succeeded"),
        ("pc2", False, "succeeded_recently"),
        ("pc3", False, "dispatched"),
        ("pc4", False, "offline"),
    ]


def test_preview_per_target_and_gate() -> None:
    plan = lower(
        parse_schedule(
            doc(
                "a",
                when={"per_target": "once"},
                runs_on="backend",
                tz="utc",
                constraints={"window": "01:00-02:00"},
            )
        )
    )
    got = preview(
        plan, now=NOW, local_tz=FAR, pcs=["a", "b"], alive={"b"}, last_success={}, freeze=Freeze()
    )
    assert got.gate is not None and "outside window" in got.gate
    assert [(p.pc_id, p.would_fire) for p in got.pcs] == [("a", False), ("b", True)]
    assert got.fires == ()  # frozen for good: nothing upcoming
