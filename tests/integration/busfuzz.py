"""The bus fuzzer's messages (issue #15): for every subject the backend and the agent consume,
valid templates mutated into malformed, wrong-typed, out-of-range and oversized messages.

Deterministic (one seeded ``random.Random``), so a failure replays. :func:`campaign` yields
``(family, subject, payload, how)``; the test publishes each one — onto the stream for a
JetStream subject, plain core NATS otherwise, as a request where the consumer replies — with
the backend's own broker identity, the broadest any attacker could hold.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from kanade.bus.kv import kv_subject
from kanade.core import subjects

NOW: Final = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
Transport = Literal["js", "core", "request"]

# Values that are absurd for almost any field: beyond 64 bits, not finite, negative, empty,
# huge, dates at the ends of time or naive, control characters, big containers.
EXTREMES: Final[tuple[Any, ...]] = (
    2**64,
    -(2**63) - 1,
    10**30,
    1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    -1,
    0,
    "",
    "x" * 100_000,
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "2026-01-01T00:00:00",
    "\u0000\u202e\ud7ff",
    '{"status": "ok", "deep": ' + "[" * 5_000 + "]" * 5_000 + "}",  # as an inventory stdout
    ["a"] * 10_000,
    {str(i): i for i in range(2_000)},
    True,
)
WRONG_TYPES: Final[tuple[Any, ...]] = (None, True, 7, 1.5, "text", [], {}, [1, "a"], {"a": 1})
MALFORMED: Final[tuple[bytes, ...]] = (
    b"",
    b"{",
    b"null",
    b"[]",
    b'"just a string"',
    b"\xff\xfe\x00garbage",
    b"[" * 50_000 + b"]" * 50_000,
    b'{"a":' * 2_000 + b"1" + b"}" * 2_000,
    b'{"schema": 1, "pc_id": "x", "pc_id": 5}',
    b"NaN",
)


@dataclass(frozen=True)
class Family:
    """One kind of subject someone consumes, a valid message for it, how it is sent."""

    name: str
    subjects: tuple[str, ...]
    template: dict[str, Any]
    transport: Transport
    max_bytes: int  # the largest message its stream (or the broker) takes


def _result(pc: str) -> dict[str, Any]:
    return {
        "schema": 1, "result_id": "f" * 32, "request_id": "r" * 32, "exec_id": "e" * 32,
        "pc_id": pc, "job_id": "fuzz", "version": "1", "exit_code": 0, "skipped": False,
        "stdout": "out", "stderr": "", "stdout_bytes": 3, "stderr_bytes": 0,
        "started_at": NOW, "finished_at": NOW, "attempts": 1, "note": None,
    }  # fmt: skip


def _started(pc: str) -> dict[str, Any]:
    return {
        "schema": 1, "result_id": "f" * 32, "request_id": "r" * 32, "exec_id": "e" * 32,
        "pc_id": pc, "job_id": "fuzz", "version": "1", "started_at": NOW, "timeout_s": 30.0,
    }  # fmt: skip


def _heartbeat(pc: str) -> dict[str, Any]:
    return {
        "schema": 1, "pc_id": pc, "agent_version": "fuzz", "hostname": pc, "os_family": "linux",
        "os_version": "x", "boot_time": NOW, "cpu_percent": 1.0, "rss_bytes": 1024,
        "groups": ["g"], "queue_length": 0, "running": 0, "sent_at": NOW,
    }  # fmt: skip


def _command(pc: str) -> dict[str, Any]:
    return {
        "schema": 1, "request_id": "r" * 32, "exec_id": "e" * 32, "job_id": "fuzz",
        "version": "1", "shell": "sh", "script": "echo fuzz", "timeout_s": 5.0,
        "jitter_s": 0.0, "issued_at": NOW, "expires_at": NOW, "deadline_at": None,
        "retry": {"max": 1, "backoff_s": 0.0}, "staleness": {"mode": "cached"},
        "address": {"all": False, "groups": [], "pcs": [pc]}, "max_output_bytes": 1024,
        "env": {"A": "b"}, "notes": [],
    }  # fmt: skip


def _decision(pc: str) -> dict[str, Any]:
    return {
        "pc_id": pc, "schedule_id": "fuzz", "occurrence_id": "fuzz:2026-01-01T10:00:00Z",
        "nominal_time": NOW, "decided_at": NOW, "result": "fired", "reason": None,
        "detail": "", "count": 1, "request_id": "r" * 32, "epoch": "e1",
        "totals": {"fired": 1, "skipped": 0, "missed": 0},
    }  # fmt: skip


def _exec_record() -> dict[str, Any]:
    return {
        "exec_id": "e" * 32, "kind": "job", "job_id": "fuzz", "version": "1",
        "target": {"pcs": ["x"]}, "expected_pcs": ["x"], "expected_count": 1,
        "status": "pending", "initiated_by": "fuzz", "created_at": NOW, "request_id": "r" * 32,
        "inventory_hint": {"display": ["x"], "summary": []},
        "check_hint": {"name": "fuzz", "status_field": "status", "detail_field": "detail"},
    }  # fmt: skip


def families(pc: str, group: str) -> list[Family]:
    """Every subject the backend and the agent ``pc`` (member of ``group``) consume."""
    mib = 1024 * 1024
    job = {"id": "fuzz", "version": "1",
           "execute": {"shell": "sh", "script": "echo", "timeout": "30s"}}  # fmt: skip
    schedule = {"id": "fuzz", "job_id": "fuzz", "target": {"all": True},
                "when": {"calendar": {"at": "10:00"}}, "runs_on": "agent"}  # fmt: skip
    return [
        # --- the backend consumes ---------------------------------------------------------
        Family("result", (subjects.result_subject(pc), subjects.result_subject("other-pc")),
               _result(pc), "js", 8 * mib),
        Family("started", (subjects.started_subject(pc),), _started(pc), "js", 8 * mib),
        Family("decision", (subjects.decision_subject(pc, "fuzz"),
                            subjects.decision_subject("other-pc", "fuzz")),
               _decision(pc), "js", 8 * mib),
        Family("heartbeat", (subjects.heartbeat_subject(pc), subjects.heartbeat_subject("ghost")),
               _heartbeat(pc), "core", 8 * mib),
        Family("exec-created", (subjects.exec_subject("created", "e" * 32),), _exec_record(),
               "js", mib),
        Family("exec-status", (subjects.exec_subject("cancelled", "e" * 32),
                               subjects.exec_subject("approved", "x")),
               {"exec_id": "e" * 32, "status": "cancelled", "at": NOW, "by": "fuzz"}, "js", mib),
        Family("audit", (subjects.audit_subject("fuzz"),),
               {"action": "fuzz", "actor": "fuzz", "at": NOW, "details": {"k": "v"}}, "js", mib),
        Family("consumer-request", (subjects.consumer_request_subject(pc),
                                    "kanade.agent.not*a*pc.consumer"),
               {"groups": [group]}, "request", 8 * mib),
        Family("kv-schedules", (kv_subject(subjects.KV_SCHEDULES, "fuzz"),), schedule, "js", mib),
        Family("kv-jobs", (kv_subject(subjects.KV_JOBS, "fuzz"),), job, "js", mib),
        Family("kv-freeze", (kv_subject(subjects.KV_FREEZE, "fleet"),),
               {"from": NOW, "until": None, "by": "fuzz", "reason": "", "set_at": NOW}, "js", mib),
        Family("kv-dispatch", (kv_subject(subjects.KV_DISPATCH, "scheduler.lease"),
                               kv_subject(subjects.KV_DISPATCH, "tick.fuzz")),
               {"holder": "fuzz", "term": 1, "expires_at": NOW}, "js", 64 * 1024),
        # --- the agent consumes -------------------------------------------------------------
        Family("command-pc", (subjects.command_subject("pc", pc, "fuzz"),), _command(pc), "js",
               mib),
        Family("command-group", (subjects.command_subject("group", group, "fuzz"),),
               _command(pc), "js", mib),
        Family("command-all", (subjects.command_subject("all", None, "fuzz"),), _command(pc),
               "js", mib),
        Family("ping", (subjects.ping_subject(pc),), {"hello": "agent"}, "request", 8 * mib),
        Family("kill", (subjects.KILL_SUBJECT,), {"exec_id": "e" * 32}, "core", 8 * mib),
        Family("kv-groups", (kv_subject(subjects.KV_GROUPS, pc),), {"v": [group]}, "js", mib),
        Family("kv-config", (kv_subject(subjects.KV_CONFIG, "global"),
                             kv_subject(subjects.KV_CONFIG, f"pc.{pc}")),
               {"heartbeat_interval": 1, "max_local_concurrent": 4}, "js", mib),
        Family("kv-pins", (kv_subject(subjects.KV_PINS, "fuzz"),), {"v": "1"}, "js", mib),
        Family("kv-revocations", (kv_subject(subjects.KV_REVOCATIONS, "fuzz"),),
               {"revoked_at": NOW, "by": "fuzz", "reason": "x"}, "js", mib),
        Family("kv-trust", (kv_subject(subjects.KV_TRUST, subjects.SIGNING_KEYS_KEY),),
               {"keys": [{"kid": "x", "public_key": "AAAA"}]}, "js", 64 * 1024),
    ]  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy: Any = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[path[0]] = _replace(copy[path[0]], path[1:], new)
    return copy


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()  # NaN / Infinity the way Python writes them


def mutate(rng: random.Random, family: Family) -> tuple[bytes, str]:
    """One bad message for ``family`` and what kind of bad it is."""
    kind = rng.choice(("malformed", "wrong-type", "out-of-range", "out-of-range", "oversized",
                       "extra-fields"))  # fmt: skip
    template = family.template
    if kind == "malformed":
        return rng.choice(MALFORMED), kind
    if kind == "oversized":
        size = rng.choice((family.max_bytes - 512, family.max_bytes + 1024))
        key = rng.choice([p for p in _paths(template) if len(p) == 1])
        return _dumps(_replace(template, key, "x" * size)), kind
    if kind == "extra-fields":
        return _dumps({**template, "unexpected": rng.choice(EXTREMES), "schema": 99}), kind
    path = rng.choice(_paths(template))
    pool = WRONG_TYPES if kind == "wrong-type" else EXTREMES
    return _dumps(_replace(template, path, rng.choice(pool))), kind


@dataclass(frozen=True)
class Shot:
    family: str
    subject: str
    payload: bytes
    transport: Transport
    kind: str


def campaign(pc: str, group: str, per_family: int, seed: int = 15) -> Iterator[Shot]:
    """``per_family`` bad messages for every family, interleaved."""
    rng = random.Random(seed)
    fams = families(pc, group)
    for _ in range(per_family):
        for fam in fams:
            payload, kind = mutate(rng, fam)
            yield Shot(fam.name, rng.choice(fam.subjects), payload, fam.transport, kind)
