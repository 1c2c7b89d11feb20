"""The bounds of every value on the wire and in documents (kanade.core.bounds, issue #15):
each absurd value of the issue is refused with the field named, at the writer and at the
reader; free text is cut, never refused; JSON from outside never raises RecursionError."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kanade.core import exitcodes
from kanade.core.agentconfig import validate_setting
from kanade.core.bounds import MAX_INLINE_OUTPUT_BYTES, cut, loads
from kanade.core.gates import KvView, evaluate_gates
from kanade.core.ids import is_slug
from kanade.core.models.wire import (
    Command,
    EventStarted,
    Heartbeat,
    Result,
    WireDecodeError,
    decode,
    decode_command,
)

NOW = "2026-03-01T12:00:00Z"
HEAD = {"request_id": "r" * 32, "exec_id": "e" * 32, "job_id": "job", "version": "1",
        "issued_at": NOW}  # fmt: skip
RESULT = {"result_id": "x" * 32, "request_id": "r", "exec_id": "e", "pc_id": "pc",
          "job_id": "job", "version": "1", "exit_code": 0, "finished_at": NOW}  # fmt: skip
HEARTBEAT = {"pc_id": "pc", "agent_version": "1", "hostname": "h", "os_family": "linux",
             "sent_at": NOW}  # fmt: skip


def raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()  # NaN / Infinity as Python writes them


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"jitter_s": 1e308}, "jitter_s"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"timeout_s": float("inf")}, "timeout_s"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": -1}, "timeout_s"),
        ({"timeout_s": 5, "retry": {"max": 50}}, "retry.max"),
        ({"timeout_s": 5, "retry": {"max": 1, "backoff_s": 1e9}}, "retry.backoff_s"),
        ({"timeout_s": 5, "max_output_bytes": 2**40}, "max_output_bytes"),
        ({"timeout_s": 5, "deadline_at": "9999-12-31T00:00:00Z"}, "deadline_at"),
        ({"timeout_s": 5, "staleness": {"mode": "strict", "max_cache_age_s": -1}},
         "staleness.max_cache_age_s"),
    ],
)  # fmt: skip
def test_a_command_out_of_bounds_becomes_a_stand_in_and_the_reason(
    fields: dict[str, Any], field: str
) -> None:
    cmd, invalid = decode_command(raw({"timeout_s": 5, **HEAD, **fields}))
    assert invalid is not None and invalid.startswith(field + ":"), invalid
    assert (cmd.request_id, cmd.exec_id, cmd.job_id) == (HEAD["request_id"], "e" * 32, "job")
    skip = evaluate_gates(cmd, now=datetime.now(UTC), view=KvView(), shell_available=True,
                          invalid=invalid)  # fmt: skip
    assert skip is not None and skip.exit_code == exitcodes.UNSUPPORTED
    assert skip.reason == f"invalid command: {invalid}"


def test_a_sound_command_has_no_reason_and_a_bad_head_is_not_answerable() -> None:
    cmd, invalid = decode_command(raw({**HEAD, "timeout_s": 5}))
    assert invalid is None and cmd.timeout_s == 5
    for bad in ({"request_id": ""}, {"request_id": "r" * 129}, {"job_id": "a b"},
                {"job_id": "job\n"}, {"issued_at": "0001-01-01T00:00:00Z"}):  # fmt: skip
        with pytest.raises(WireDecodeError):
            decode_command(raw({**HEAD, "timeout_s": 5, **bad}))


def test_a_refusal_wins_over_invalid() -> None:
    cmd, invalid = decode_command(raw({**HEAD, "timeout_s": float("nan")}))
    skip = evaluate_gates(cmd, now=datetime.now(UTC), view=KvView(), shell_available=True,
                          refusal="refused: bad signature", invalid=invalid)  # fmt: skip
    assert skip is not None and skip.exit_code == exitcodes.REFUSED


@pytest.mark.parametrize(
    ("model", "base", "fields"),
    [
        (Heartbeat, HEARTBEAT, {"rss_bytes": 2**64}),
        (Heartbeat, HEARTBEAT, {"cpu_percent": float("nan")}),
        (Heartbeat, HEARTBEAT, {"queue_length": -1}),
        (Heartbeat, HEARTBEAT, {"sent_at": "9999-12-31T00:00:00Z"}),
        (Heartbeat, HEARTBEAT, {"groups": ["g"] * 5000}),
        (Result, RESULT, {"result_id": ""}),
        (Result, RESULT, {"result_id": "r" * 100_000}),
        (Result, RESULT, {"exit_code": 2**64}),
        (Result, RESULT, {"stdout_bytes": -1}),
        (Result, RESULT, {"attempts": 10**12}),
        (Result, RESULT, {"finished_at": "9999-12-31T00:00:00Z"}),
        (EventStarted, {**RESULT, "started_at": NOW}, {"timeout_s": 1e308}),
    ],
)
def test_reports_out_of_bounds_do_not_decode(
    model: type[Any], base: dict[str, Any], fields: dict[str, Any]
) -> None:
    with pytest.raises(WireDecodeError, match=next(iter(fields))):
        decode(model, raw({**base, **fields}))


def test_result_text_is_cut_never_refused() -> None:
    res = decode(Result, raw({**RESULT, "stdout": "x" * 3_000_000, "stderr": "a\x00b"}))
    assert len(res.stdout) == MAX_INLINE_OUTPUT_BYTES
    assert res.stderr == "a\ufffdb"
    assert res.note == f"stdout cut to {MAX_INLINE_OUTPUT_BYTES} characters on receipt"


def test_a_naive_instant_is_utc() -> None:
    hb = decode(Heartbeat, raw({**HEARTBEAT, "sent_at": "2026-03-01T12:00:00"}))
    assert hb.sent_at == datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_slugs_and_ids_refuse_a_final_newline() -> None:
    assert is_slug("pc-1") and not is_slug("pc-1\n")
    with pytest.raises(WireDecodeError):
        decode(Result, raw({**RESULT, "pc_id": "pc\n"}))
    with pytest.raises(WireDecodeError):
        decode(Result, raw({**RESULT, "result_id": "x\n"}))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("heartbeat_interval", float("nan")),
        ("heartbeat_interval", 1e308),
        ("heartbeat_interval", 0.0),
        ("max_local_concurrent", 10**9),
        ("max_output_bytes", 2**40),
        ("target_version_jitter", float("inf")),
        ("target_version", "v" * 500),
    ],
)
def test_agent_settings_are_bounded(key: str, value: Any) -> None:
    with pytest.raises(ValueError, match=key):
        validate_setting(key, value)


def test_loads_turns_a_recursion_error_into_a_value_error() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        loads("[" * 100_000 + "]" * 100_000)
    assert loads('{"a": [1]}') == {"a": [1]}


def test_cut() -> None:
    assert cut("abc", 5) == ("abc", False)
    assert cut("abcdef", 3) == ("abc", True)


@given(st.binary(max_size=300))
def test_any_bytes_either_decode_or_raise_wire_decode_error(data: bytes) -> None:
    for model in (Result, EventStarted, Heartbeat):
        with contextlib.suppress(WireDecodeError):
            decode(model, data)
    with contextlib.suppress(WireDecodeError):
        decode_command(data)


def test_commands_the_backend_builds_are_within_bounds() -> None:
    # The writer and the reader agree: what build_command makes, decode_command accepts.
    from kanade.core.dispatch import build_command
    from kanade.core.models.target import Target
    from kanade.core.validation import parse_job

    job = parse_job({"id": "job", "version": "1",
                     "execute": {"shell": "sh", "script": "true", "timeout": "7d"}})  # fmt: skip
    cmd = build_command(job, exec_id="e", request_id="r", address=Target(pcs=["pc"]),
                        issued_at=datetime.now(UTC), jitter_s=86_400)  # fmt: skip
    assert decode_command(cmd.model_dump_json(by_alias=True).encode())[1] is None
    assert isinstance(cmd, Command)
