"""Property-based fuzzing of the whole HTTP API from its own OpenAPI document.

For every operation the app publishes, hypothesis generates path parameters,
query parameters and bodies from the schema (mostly valid, sometimes just wrong:
out-of-range integers, NaN, unknown fields, wrong types, YAML garbage) and sends
them to a real backend (real nats-server, real SQLite). The property: the
backend never answers 500, and every error is a JSON object with a message.

Operations are read from the OpenAPI document at collection time, so a route
added by anyone is fuzzed without touching this file.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kanade.backend.app import create_app
from kanade.backend.inprocess import InProcessBackend, in_process_backend
from kanade.backend.settings import Settings
from kanade.bus import EmbeddedBroker
from kanade.security.authority import Authority
from secured import authority_dir

# Streams never end, so a request would hang: not fuzzable as a request/response.
SKIP = {("GET", "/api/events"), ("GET", "/api/executions/{exec_id}/live")}
EXAMPLES = 60
JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
ANY_JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _spec() -> dict[str, Any]:
    app = create_app(
        Settings(nats_url="nats://127.0.0.1:1", db_url="sqlite://", authority_dir=authority_dir())
    )
    return app.openapi()


SPEC = _spec()
COMPONENTS = SPEC.get("components", {}).get("schemas", {})
OPERATIONS = sorted(
    (method.upper(), path)
    for path, ops in SPEC["paths"].items()
    for method in ops
    if (method.upper(), path) not in SKIP
)


# --- schema → strategy ------------------------------------------------------------------


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = COMPONENTS[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def from_schema(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Mostly-valid values for ``schema``; a fraction of deliberately wrong ones."""
    schema = _resolve(schema)
    if depth > 4:
        return JSON_LEAVES
    wrong = ANY_JSON if depth > 0 else st.just({"unexpected": True})
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | st.text(max_size=8)
    if "const" in schema:
        return st.just(schema["const"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(s, depth + 1) for s in schema[key]])
    if "allOf" in schema:
        return from_schema(schema["allOf"][0], depth + 1)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        base = st.fixed_dictionaries(
            {k: from_schema(v, depth + 1) for k, v in props.items() if k in required},
            optional={k: from_schema(v, depth + 1) for k, v in props.items() if k not in required},
        )
        extra = st.dictionaries(st.text(min_size=1, max_size=6), JSON_LEAVES, max_size=2)
        return st.one_of(
            base,
            st.builds(lambda a, b: {**b, **a}, base, extra),  # unknown fields
            wrong,
        )
    if kind == "array":
        items = schema.get("items", {})
        return st.lists(from_schema(items, depth + 1), max_size=4) | wrong
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return st.datetimes(timezones=st.sampled_from([None, *_zones()])).map(
                lambda d: d.isoformat()
            ) | st.text(max_size=12)
        lo, hi = schema.get("minLength", 0), min(schema.get("maxLength", 24), 24)
        return st.text(min_size=lo, max_size=max(lo, hi)) | st.text(max_size=3)
    if kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        return st.integers(lo, hi) | st.integers(-(2**70), 2**70)
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum")) | st.floats()
    if kind == "boolean":
        return st.booleans() | st.sampled_from(["yes", 2])
    if kind == "null":
        return st.none()
    return ANY_JSON


def _zones() -> list[Any]:
    from datetime import UTC, timedelta, timezone

    return [UTC, timezone(timedelta(hours=5, minutes=30))]


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


@st.composite
def requests_for(draw: st.DrawFn, method: str, path: str) -> dict[str, Any]:
    op = SPEC["paths"][path][method.lower()]
    url = path
    params: dict[str, str] = {}
    for p in op.get("parameters", []):
        schema = p.get("schema", {})
        if p["in"] == "path":
            value = draw(
                st.text(min_size=1, max_size=16) | st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True)
            )
            url = url.replace("{" + p["name"] + "}", quote(value, safe=""))
        elif p["in"] == "query":
            if p["name"] == "timeout":
                # Waiting on an agent that does not exist: keep it short.
                params["timeout"] = draw(st.sampled_from(["0.05", "0", "-1", "x", "1e308"]))
                continue
            if not p.get("required") and draw(st.booleans()):
                continue
            params[p["name"]] = _param_text(draw(from_schema(schema)))
    req: dict[str, Any] = {"method": method, "url": url, "params": params}
    body = op.get("requestBody")
    if body is not None:
        content = body.get("content", {})
        choice = draw(st.sampled_from(["schema", "schema", "schema", "garbage", "yaml"]))
        if choice == "garbage":
            req["content"] = draw(st.binary(max_size=40) | st.text(max_size=40).map(str.encode))
            req["headers"] = {"content-type": "application/json"}
        elif choice == "yaml" and any("yaml" in t for t in content):
            value = draw(from_schema(content.get("application/json", {}).get("schema", {})))
            text = draw(
                st.sampled_from(
                    [
                        yaml.safe_dump(value),
                        "a: [1,\n",
                        "- - -\n: :",
                        "!!python/object:os.system {}",
                    ]
                )
            )
            req["content"] = text.encode()
            req["headers"] = {"content-type": "application/yaml"}
        else:
            schema = content.get("application/json", {}).get("schema", {})
            value = draw(from_schema(schema))
            req["content"] = json.dumps(value, allow_nan=True).encode()
            req["headers"] = {"content-type": "application/json"}
    return req


# --- a backend on its own event loop, called from hypothesis' synchronous tests ---------


class BackendThread:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ready: Future[InProcessBackend] = Future()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="fuzz-backend", daemon=True)
        self._thread.start()
        self.backend = self._ready.result(timeout=60)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with in_process_backend(self._settings) as backend:
                self._ready.set_result(backend)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def request(self, **req: Any) -> httpx.Response:
        coro = self.backend.client.request(**req)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def fuzz_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendThread]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    # Its own trust root and signing keys: the fuzzer reaches /api/keys/rotate and
    # /api/agents/{pc}/revoke, which must not change the keys or the account the rest of
    # the session's backends and agents share.
    authority = Authority.create(root / "security")
    broker = EmbeddedBroker(root / "nats", security=authority.broker_security())
    broker.start(timeout=15)
    thread = None
    try:
        settings = Settings.from_db_arg(
            authority_dir=authority.root,
            nats_url=broker.url,
            db=str(root / "fuzz.db"),
            signing_keys_dir=str(root / "keys"),
        )
        thread = BackendThread(settings)
        # Something to find: a job, so routes taking a job id reach their real logic.
        job = {
            "id": "hello",
            "version": "1",
            "execute": {"shell": "sh", "script": "true", "timeout": "5s"},
        }
        assert thread.request(method="POST", url="/api/jobs", json=job).status_code in (200, 201)
        yield thread
    finally:
        if thread is not None:
            thread.close()
        broker.stop(timeout=10)


def test_every_operation_is_fuzzed() -> None:
    paths = {p for _, p in OPERATIONS}
    assert {"/api/exec/{job_id}", "/api/run", "/api/jobs", "/api/freeze", "/api/users"} <= paths


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_no_request_makes_the_api_fail(
    fuzz_backend: BackendThread, method: str, path: str, data: st.DataObject
) -> None:
    req = data.draw(requests_for(method, path), label="request")
    r = fuzz_backend.request(**req)
    assert r.status_code != 500, f"{method} {req['url']} → 500: {r.text[:500]}"
    if r.status_code >= 400:
        body = r.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]
