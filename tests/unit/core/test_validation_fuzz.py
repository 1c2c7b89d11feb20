"""Any input whatsoever yields a model or DocumentInvalid — never another exception
(SPEC §7 "never crash on bad input"), and every accepted document round-trips."""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from kanade.core.validation import (
    DocumentInvalid,
    load_document,
    parse_job,
    parse_schedule,
)

JOBS: list[dict[str, Any]] = [
    {
        "id": "disk-report",
        "version": "3",
        "execute": {"shell": "bash", "script": "df -h", "timeout": "30s"},
    },
    {
        "id": "facts",
        "version": "1",
        "tags": ["a"],
        "execute": {
            "shell": "python",
            "script_object": "facts/2",
            "timeout": "1h",
            "env": {"A": "b"},
            "cwd": "/tmp",
            "run_as": "user",
        },
        "staleness": {"mode": "strict", "max_cache_age": "5m"},
        "inventory": {"display": ["os"], "summary": ["os"]},
        "check": {"name": "c", "status_field": "s"},
        "require_approval": True,
    },
]

SCHEDULES: list[dict[str, Any]] = [
    {
        "id": "s1",
        "job_id": "disk-report",
        "when": {"calendar": {"at": "02:30", "days": ["mon-fri", "sat#1", "sunL"]}},
        "target": {"groups": ["servers"], "pcs": ["pc-1"]},
        "rollout": {
            "waves": [{"pcs": ["pc-1"]}, {"group": "g", "delay": "1h"}, {"percent": 50}],
            "halt_on_failure_rate": 0.1,
        },
        "tz": "Europe/Berlin",
        "active": {"from": "2026-01-01", "until": "2027-01-01 00:00"},
        "constraints": {"window": "22:00-06:00", "skip_dates": ["2026-12-25"], "max_concurrent": 3},
        "on_failure": {"retry": {"max": 2, "backoff": "1m"}},
        "starting_deadline": "1h",
        "jitter": "5m",
        "catchup": "skip",
    },
    {
        "id": "s2",
        "job_id": "facts",
        "when": {"per_pc": {"every": "1d"}},
        "target": {"all": True},
        "runs_on": "agent",
    },
    {"id": "s3", "job_id": "x", "when": {"cron": "*/5 * * * *"}, "target": {"pcs": ["a"]}},
    {"id": "s4", "job_id": "x", "when": {"per_target": "once"}, "target": {"all": True}},
]

# Field names of the documents: junk keyed by them gets past the first level and into the
# nested models, where the interesting failures are.
VOCAB = sorted(
    {
        "id",
        "version",
        "execute",
        "shell",
        "script",
        "script_file",
        "script_object",
        "timeout",
        "run_as",
        "cwd",
        "env",
        "staleness",
        "mode",
        "max_cache_age",
        "inventory",
        "display",
        "summary",
        "check",
        "name",
        "status_field",
        "job_id",
        "when",
        "per_pc",
        "per_target",
        "every",
        "calendar",
        "at",
        "days",
        "cron",
        "target",
        "all",
        "groups",
        "pcs",
        "rollout",
        "waves",
        "group",
        "percent",
        "delay",
        "halt_on_failure_rate",
        "jitter",
        "runs_on",
        "tz",
        "active",
        "from",
        "until",
        "constraints",
        "window",
        "skip_dates",
        "max_concurrent",
        "on_failure",
        "retry",
        "max",
        "backoff",
        "starting_deadline",
        "catchup",
        "enabled",
        "tags",
    }
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "once",
            "30s",
            "0s",
            "10:00",
            "25:00",
            "mon-fri",
            "tue#2",
            "friL",
            "utc",
            "local",
            "* * * * *",
            "2026-01-01",
            "2026-01-01 10:00",
            "strict",
            "agent",
            "backend",
            "sh",
            "a/1",
            "22:00-06:00",
            "10:00-10:00",
            "Europe/Berlin",
            "x" * 300,
        ]
    )
    | st.dates()
    | st.datetimes()
    | st.timedeltas()
)
keys = st.sampled_from(VOCAB) | st.text(max_size=10) | st.integers() | st.none() | st.booleans()
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(fn: Any, data: object, **kw: Any) -> BaseModel | None:
    try:
        model: BaseModel = fn(data, **kw)
    except DocumentInvalid as exc:
        assert exc.errors, "an invalid document must say why"
        for err in exc.errors:
            assert err.path and err.reason
            # The catch-all in _parse is a safety net; hitting it means a validator bug.
            assert "could not be validated" not in err.reason, err
        assert str(exc).count("\n") == len(exc.errors)
        exc.to_dict()
        return None
    return model


def _round_trips(fn: Any, model: BaseModel, **kw: Any) -> None:
    again = fn(model.model_dump(mode="json"), **kw)
    assert again == model


@FUZZ
@given(junk)
def test_junk_jobs(data: object) -> None:
    for strict in (True, False):
        model = _check(parse_job, data, strict=strict)
        if model is not None:
            _round_trips(parse_job, model)


@FUZZ
@given(junk)
def test_junk_schedules(data: object) -> None:
    for strict in (True, False):
        model = _check(parse_schedule, data, strict=strict)
        if model is not None:
            _round_trips(parse_schedule, model)


@FUZZ
@given(st.dictionaries(keys, junk, max_size=8))
def test_junk_mappings(data: dict[Any, Any]) -> None:
    _check(parse_job, data)
    _check(parse_schedule, data, known_job_ids=["x"])


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: dict[str, Any], data: st.DataObject) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = data.draw(st.sampled_from(paths))
        if not path:
            return data.draw(junk)
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        last = path[-1]
        if action == "replace":
            parent[last] = data.draw(junk)
        elif action == "delete":
            del parent[last]
        elif isinstance(parent[last], dict):
            parent[last][data.draw(keys)] = data.draw(junk)
        elif isinstance(parent[last], list):
            parent[last].append(data.draw(junk))
    return doc


@FUZZ
@given(st.sampled_from(JOBS), st.data())
def test_mutated_jobs(doc: dict[str, Any], data: st.DataObject) -> None:
    mutated = _mutate(doc, data)
    for strict in (True, False):
        model = _check(parse_job, mutated, strict=strict)
        if model is not None:
            _round_trips(parse_job, model)


@FUZZ
@given(st.sampled_from(SCHEDULES), st.data())
def test_mutated_schedules(doc: dict[str, Any], data: st.DataObject) -> None:
    mutated = _mutate(doc, data)
    for strict in (True, False):
        model = _check(parse_schedule, mutated, strict=strict)
        if model is not None:
            _round_trips(parse_schedule, model)


def test_seed_documents_are_valid() -> None:
    for doc in JOBS:
        parse_job(doc)
    for doc in SCHEDULES:
        parse_schedule(doc)


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_junk_text_through_the_loader(text: str | bytes) -> None:
    try:
        data = load_document(text)
    except DocumentInvalid:
        return
    _check(parse_job, data)
    _check(parse_schedule, data)


def test_pathological_inputs() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    cyclic: dict[str, Any] = {"id": "a"}
    cyclic["when"] = cyclic
    cyclic_list: list[Any] = []
    cyclic_list.append(cyclic_list)
    cases: list[Any] = [
        None,
        [],
        0,
        "x" * 1_000_000,
        {"id": "x" * 1_000_000},
        {"execute": deep},
        {"when": {"calendar": {"at": "10:00", "days": deep}}},
        cyclic,
        {"tags": cyclic_list, "target": {"pcs": cyclic_list}},
        {"execute": {"env": {str(i): i for i in range(10_000)}}},
        {"when": {"cron": "* " * 100_000}},
        {"timeout": timedelta.max, "execute": {"timeout": timedelta.max}},
        {"active": {"from": date.max, "until": datetime.min}},
        {"rollout": {"waves": [{"percent": float("nan")}, {"percent": float("inf")}]}},
    ]
    for data in cases:
        _check(parse_job, data)
        _check(parse_schedule, data)


def test_yaml_alias_bomb_is_cheap() -> None:
    text = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    prev = "a"
    for name in "bcdefghij":
        text += f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        prev = name
    text += f"tags: *{prev}\nexecute: {{env: *{prev}}}\n"
    # Refused while still nodes, before anything the size of the expansion is built.
    with pytest.raises(DocumentInvalid, match="once its aliases are expanded"):
        load_document(text)


def test_error_count_is_capped() -> None:
    data = {"id": "a", "version": "1", "tags": list(range(1000)), "execute": {}}
    try:
        parse_job(data)
    except DocumentInvalid as exc:
        assert len(exc.errors) == 101
        assert exc.errors[-1].reason.endswith("more error(s) not shown")
    else:
        raise AssertionError("expected DocumentInvalid")
