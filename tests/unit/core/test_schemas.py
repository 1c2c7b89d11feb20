"""JSON Schemas generated from the models (SPEC §2.3)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kanade.core.durations import PATTERN, format_duration
from kanade.core.schemas import job_json_schema, schedule_json_schema


def _objects(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append(node)
        for value in node.values():
            found += _objects(value)
    elif isinstance(node, list):
        for item in node:
            found += _objects(item)
    return found


def test_job_schema_shape() -> None:
    schema = job_json_schema()
    json.dumps(schema)  # serialisable as-is (served by the API)
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"id", "version", "execute"}
    assert schema["additionalProperties"] is False
    execute = schema["$defs"]["Execute"]
    assert set(execute["required"]) == {"shell", "timeout"}
    assert execute["properties"]["timeout"]["type"] == "string"
    assert execute["properties"]["timeout"]["pattern"] == PATTERN
    assert execute["properties"]["shell"]["enum"] == [
        "sh",
        "bash",
        "pwsh",
        "powershell",
        "cmd",
        "python",
    ]


def test_schedule_schema_shape() -> None:
    schema = schedule_json_schema()
    json.dumps(schema)
    assert set(schema["required"]) == {"id", "job_id", "when", "target"}
    defs = schema["$defs"]
    assert set(defs["When"]["properties"]) == {"per_pc", "per_target", "calendar", "cron"}
    assert "from" in defs["ActiveRange"]["properties"]  # the alias, not from_
    assert defs["Wave"]["properties"]["delay"]["default"] == "0s"  # not ISO "PT0S"
    assert schema["properties"]["jitter"]["default"] == "0s"
    reconcile = defs["Reconcile"]["anyOf"]
    assert {"const": "once"} in reconcile
    assert defs["Calendar"]["properties"]["at"]["type"] == "string"


def test_every_object_is_closed() -> None:
    for schema in (job_json_schema(), schedule_json_schema()):
        objects = _objects(schema)
        assert objects
        for obj in objects:
            assert obj["additionalProperties"] is False, obj


def test_schemas_are_fresh_copies() -> None:
    job_json_schema()["title"] = "changed"
    assert job_json_schema()["title"] == "kanade job manifest"


@given(st.timedeltas(min_value=timedelta(0)))
def test_pattern_accepts_every_canonical_duration(td: timedelta) -> None:
    assert re.match(PATTERN, format_duration(td))


def test_pattern_rejects_typos() -> None:
    for text in ["10 minutes", "5", "-5s", ""]:
        assert not re.match(PATTERN, text)
