"""schemathesis against a real backend process (issue #15): every operation of the OpenAPI
document, with generated valid and invalid requests (positive and negative modes), sent as
an admin and as an operator (auth on: jwt). Checked: no answer is a server error, every
status and response body is the one the document describes, and invalid data is refused.

Operations are read from the document, so a route added by anyone is fuzzed the day it
exists. The budget: ``EXAMPLES`` per operation in ``make test``; the ``slow`` run (``make
test-all``) sends ``SLOW_EXAMPLES``. The backend has its own trust root and signing keys
(the fuzzer rotates keys and revokes agents), and the fuzzer never deletes or demotes the
identities it runs as.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import httpx
import psutil
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks as st_checks
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi import checks as openapi_checks

from kanade.backend.app import create_app
from kanade.backend.settings import Settings
from pgdb import db_env
from secured import authority_dir
from stack import BIN, BackendStack, secret_file, start_backend, stop_backend

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

# Per operation and identity. make test: a bounded budget; make test-all: >= 50 each.
EXAMPLES = int(os.environ.get("KANADE_FUZZ_EXAMPLES", "10"))
SLOW_EXAMPLES = int(os.environ.get("KANADE_FUZZ_SLOW_EXAMPLES", "60"))
PASSWORD = "fuzz-pass-word-123"
USERS = {"fuzz-admin": "admin", "fuzz-operator": "operator"}
CHECKS = [
    st_checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
]


def _document() -> dict[str, Any]:
    # The document the app serves, without serving it (conftest installed the test keys).
    app = create_app(
        Settings(nats_url="nats://127.0.0.1:1", db_url="sqlite://", authority_dir=authority_dir())
    )
    return app.openapi()


# Endless streams: not fuzzable as request/response.
SCHEMA = (
    schemathesis.openapi.from_dict(_document())
    .exclude(method="GET", path="/api/events")
    .exclude(method="GET", path="/api/executions/{exec_id}/live")
)


class Fuzzed:
    """The backend under test, a token per identity, and what was sent: requests per
    (identity, operation) and failures per kind, printed as one JSON line at the end."""

    def __init__(self, stack: BackendStack, tokens: dict[str, str]) -> None:
        self.stack = stack
        self.tokens = tokens
        self.requests: Counter[tuple[str, str]] = Counter()
        self.failures: Counter[str] = Counter()

    def summary(self) -> dict[str, Any]:
        per_operation = list(self.requests.values())
        return {
            "fuzz": "schemathesis",
            "schemathesis": version("schemathesis"),
            "operations": len({op for _, op in self.requests}),
            "identities": sorted({who for who, _ in self.requests}),
            "requests": sum(per_operation),
            "min_requests_per_operation": min(per_operation, default=0),
            # Operations with little to vary (no parameters, no body) are exhausted early.
            "operations_under_50": sorted(
                {op for (_, op), n in self.requests.items() if n < 50}
            ),
            "server_errors": self.failures["ServerError"],
            "schema_violations": self.failures["JsonSchemaError"]
            + self.failures["MalformedJson"],
            "failures": dict(self.failures),
            "rss_mb": round(psutil.Process(self.stack.proc.pid).memory_info().rss / 2**20, 1),
        }


@pytest.fixture(scope="module")
def fuzzed(
    tmp_path_factory: pytest.TempPathFactory, module_store_url: str
) -> Iterator[Fuzzed]:
    base = tmp_path_factory.mktemp("schemathesis")
    db = module_store_url
    for name, role in USERS.items():
        subprocess.run(
            [str(BIN / "kanade-backend"), "user", "add", name, "--role", role,
             "--password-stdin"],
            input=PASSWORD + "\n", text=True, check=True, capture_output=True, timeout=60,
            env=db_env(db),
        )  # fmt: skip
    secret = secret_file(base / "jwt.secret", "fuzz-secret-" + "s" * 32)
    stack = start_backend(
        base,
        "--auth", "jwt", "--jwt-secret-file", str(secret),
        "--signing-keys", str(base / "keys"),
        # The fuzzer's logins fail by the thousand from one address: the limit (tested in
        # test_login_limits) would answer its own logins 429 (a fresh token per logout).
        "--login-failures-per-address", "1000000",
        authority=base / "security",
        db=db,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=stack.url, timeout=10) as http:
            tokens = {}
            for name in USERS:
                r = http.post("/api/auth/login", json={"username": name, "password": PASSWORD})
                assert r.status_code == 200, r.text
                tokens[name] = r.json()["token"]
            # Something to find: routes taking a job id reach their real logic.
            job = {
                "id": "hello",
                "version": "1",
                "execute": {"shell": "sh", "script": "true", "timeout": "5s"},
            }
            admin = {"Authorization": f"Bearer {tokens['fuzz-admin']}"}
            assert http.post("/api/jobs", json=job, headers=admin).status_code == 201
        fuzzed = Fuzzed(stack, tokens)
        yield fuzzed
        print(json.dumps(fuzzed.summary()))
    finally:
        stop_backend(stack)


def _protect_identities(case: Any) -> None:
    """The fuzzer must not lock itself out: never delete or replace its own users."""
    username = (case.path_parameters or {}).get("username")
    if username in USERS:
        case.path_parameters["username"] = username + "-other"
    body = case.body if case.method == "POST" and case.path == "/api/users" else None
    if isinstance(body, dict) and str(body.get("username")) in USERS:
        body["username"] = "someone-else"


def _fresh_token(fuzzed: Fuzzed, identity: str) -> str:
    """A token of its own for a logout case: logging out must not void the fuzzer's token."""
    with httpx.Client(base_url=fuzzed.stack.url, timeout=10) as http:
        r = http.post("/api/auth/login", json={"username": identity, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return str(r.json()["token"])


def _bounded_waits(case: Any) -> None:
    # Pinging an agent that does not exist waits for its timeout: keep it short.
    if case.query and "timeout" in case.query:
        case.query["timeout"] = 0.05


# A ping of a pc no agent answers for is a documented 504 ("no answer from X"): the
# agent's silence, not a server failure. Its status is still checked against the document.
REMOTE_SILENCE = {("POST", "/api/agents/{pc_id}/ping")}
# A bare string where the document says "array of strings" is the same bytes on the wire as a
# one-item array (`?key=true` is ["true"]): schemathesis counts it as invalid data, the route
# rightly takes it. Only such cases skip the negative-data check (the others all keep it).
ARRAY_QUERY_ITEMS = {"key": re.compile(r"^[a-z][a-z0-9_]{0,63}$")}


def _same_bytes_as_valid(case: Any) -> bool:
    query = case.query or {}
    return any(
        isinstance(query.get(name), str) and item.fullmatch(query[name]) is not None
        for name, item in ARRAY_QUERY_ITEMS.items()
    )


# Operations that end the caller's own session: sent with a token of their own.
OWN_SESSION = {("POST", "/api/auth/logout")}


def _fuzz(fuzzed: Fuzzed, case: Any, identity: str) -> None:
    _protect_identities(case)
    _bounded_waits(case)
    checks = CHECKS
    if (case.method, case.path) in REMOTE_SILENCE:
        checks = [c for c in CHECKS if c is not st_checks.not_a_server_error]
    if _same_bytes_as_valid(case):
        checks = [c for c in checks if c is not openapi_checks.negative_data_rejection]
    fuzzed.requests[(identity, case.operation.label)] += 1
    token = fuzzed.tokens[identity]
    if (case.method, case.path) in OWN_SESSION:
        token = _fresh_token(fuzzed, identity)
    try:
        case.call_and_validate(
            base_url=fuzzed.stack.url,
            headers={"Authorization": f"Bearer {token}"},
            checks=checks,
            timeout=30,
        )
    except FailureGroup as group:
        fuzzed.failures.update(type(exc).__name__ for exc in group.exceptions)
        raise


HEALTH = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
          HealthCheck.function_scoped_fixture]  # fmt: skip


def test_every_operation_is_fuzzed() -> None:
    paths = {op.path for op in (r.ok() for r in SCHEMA.get_all_operations())}
    assert {"/api/exec/{job_id}", "/api/run", "/api/jobs", "/api/freeze", "/api/users"} <= paths
    assert "/api/scripts/{name}/{version}" in paths


@pytest.mark.parametrize("identity", list(USERS))
@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=HEALTH)
def test_api_conforms_to_its_document(fuzzed: Fuzzed, case: Any, identity: str) -> None:
    _fuzz(fuzzed, case, identity)


@pytest.mark.slow
@pytest.mark.parametrize("identity", list(USERS))
@SCHEMA.parametrize()
@settings(max_examples=SLOW_EXAMPLES, deadline=None, suppress_health_check=HEALTH)
def test_api_conforms_to_its_document_at_length(
    fuzzed: Fuzzed, case: Any, identity: str
) -> None:
    _fuzz(fuzzed, case, identity)
