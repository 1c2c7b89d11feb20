"""The OpenAPI document describes every JSON response: each operation's success status
has a schema (a response model), so clients and fuzzers can check what they get back."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from kanade.backend.app import create_app
from kanade.backend.settings import Settings
from kanade.security.authority import Authority

# Not JSON: Prometheus text, a server-sent event stream, raw script output.
NOT_JSON = {
    ("GET", "/metrics"),
    ("GET", "/api/events"),
    ("GET", "/api/executions/{exec_id}/live"),
    ("GET", "/api/results/{result_id}/output/{stream}"),
}


def _spec() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        authority = Authority.create(Path(tmp) / "security")
        app = create_app(
            Settings(
                nats_url="nats://127.0.0.1:1", db_url="sqlite://", authority_dir=authority.root
            )
        )
        return app.openapi()


SPEC = _spec()
OPERATIONS = sorted(
    (method.upper(), path, op) for path, ops in SPEC["paths"].items() for method, op in ops.items()
)
JSON_OPERATIONS = [o for o in OPERATIONS if (o[0], o[1]) not in NOT_JSON]


def _is_typed(schema: dict[str, Any]) -> bool:
    """A real schema: a reference to a component or an explicit type, never ``{}``."""
    return "$ref" in schema or "type" in schema or "anyOf" in schema


@pytest.mark.parametrize(
    ("method", "path", "op"), JSON_OPERATIONS, ids=[f"{m} {p}" for m, p, _ in JSON_OPERATIONS]
)
def test_json_operation_declares_its_response_schema(
    method: str, path: str, op: dict[str, Any]
) -> None:
    successes = {c: r for c, r in op["responses"].items() if c.startswith("2")}
    assert successes, f"{method} {path}: no success response documented"
    for code, response in successes.items():
        content = response.get("content", {})
        assert "application/json" in content, f"{method} {path} {code}: no JSON response"
        schema = content["application/json"].get("schema", {})
        assert _is_typed(schema), f"{method} {path} {code}: no response schema"


def test_exemptions_name_routes_that_exist() -> None:
    present = {(m, p) for m, p, _ in OPERATIONS}
    assert present >= NOT_JSON


def test_response_components_list_their_keys() -> None:
    components = SPEC["components"]["schemas"]
    for name, keys in {
        "ExecutionDetail": {"exec_id", "status", "expected_pcs", "results"},
        "Agent": {"pc_id", "status", "last_seen"},
        "Rollout": {"rollout_id", "status", "waves"},
        "Health": {"status", "broker", "db", "version", "auth"},
    }.items():
        assert keys <= set(components[name]["properties"]), name
