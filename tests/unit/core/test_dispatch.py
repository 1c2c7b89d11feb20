"""Pure command building (SPEC §2.4, §4.9)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from kanade.core.dispatch import adhoc_job, build_command
from kanade.core.models.constraints import Retry
from kanade.core.models.target import Target
from kanade.core.models.wire import Command, decode, encode
from kanade.core.validation import parse_job

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

FULL = parse_job(
    {
        "id": "facts",
        "version": "7",
        "execute": {
            "shell": "pwsh",
            "script": "Get-ComputerInfo",
            "timeout": "10m",
            "run_as": "user",
            "cwd": "C:/temp",
            "env": {"A": "1"},
        },
        "staleness": {"mode": "strict", "max_cache_age": "90s"},
        "inventory": {"display": ["os"], "summary": ["os", "ram"]},
        "check": {"name": "os-ok", "status_field": "st", "detail_field": "why"},
    }
)


def _build(**kw: object) -> Command:
    args: dict[str, object] = {
        "exec_id": "e1",
        "request_id": "r1",
        "address": Target(groups=["web"], pcs=["pc-1"]),
        "issued_at": NOW,
    }
    args.update(kw)
    return build_command(FULL, **args)  # type: ignore[arg-type]


def test_fields_are_copied() -> None:
    cmd = _build(
        deadline_at=NOW + timedelta(hours=1),
        jitter_s=5.0,
        schedule_id="nightly",
        nominal_time=NOW,
        max_output_bytes=1000,
    )
    assert (cmd.job_id, cmd.version, cmd.exec_id, cmd.request_id) == ("facts", "7", "e1", "r1")
    assert cmd.shell == "pwsh" and cmd.script == "Get-ComputerInfo"
    assert cmd.timeout_s == 600.0
    assert cmd.run_as == "user" and cmd.cwd == "C:/temp" and cmd.env == {"A": "1"}
    assert cmd.staleness.mode == "strict" and cmd.staleness.max_cache_age_s == 90.0
    assert cmd.inventory is not None and cmd.inventory.summary == ["os", "ram"]
    assert cmd.check is not None
    assert (cmd.check.name, cmd.check.status_field, cmd.check.detail_field) == (
        "os-ok",
        "st",
        "why",
    )
    assert cmd.address.groups == ["web"] and cmd.address.pcs == ["pc-1"] and not cmd.address.all
    assert cmd.deadline_at == NOW + timedelta(hours=1)
    assert cmd.jitter_s == 5.0
    assert cmd.schedule_id == "nightly" and cmd.nominal_time == NOW
    assert cmd.max_output_bytes == 1000
    assert cmd.notes == []
    assert cmd.retry is None
    assert cmd.issued_at == NOW


def test_defaults() -> None:
    job = parse_job(
        {"id": "j", "version": "1", "execute": {"shell": "sh", "script": "true", "timeout": "5s"}}
    )
    cmd = build_command(job, exec_id="e", request_id="r", address=Target(all=True), issued_at=NOW)
    assert cmd.address.all
    assert cmd.staleness.mode == "cached" and cmd.staleness.max_cache_age_s is None
    assert cmd.inventory is None and cmd.check is None
    assert cmd.max_output_bytes == 262144
    assert cmd.deadline_at is None and cmd.schedule_id is None


def test_timeout_capped_with_a_note() -> None:
    cmd = _build(max_timeout_s=300)
    assert cmd.timeout_s == 300
    assert cmd.notes == ["timeout capped to 300s by server budget (job asked 600s)"]


@pytest.mark.parametrize("budget", [None, 0, 600, 3600])
def test_timeout_not_capped(budget: float | None) -> None:
    cmd = _build(max_timeout_s=budget)
    assert cmd.timeout_s == 600 and cmd.notes == []


def test_retry_is_carried_in_seconds() -> None:
    cmd = _build(retry=Retry(max=3, backoff=timedelta(seconds=30)))
    assert cmd.retry is not None
    assert (cmd.retry.max, cmd.retry.backoff_s) == (3, 30.0)


def test_script_object_needs_a_pinned_digest() -> None:
    job = parse_job(
        {
            "id": "j",
            "version": "1",
            "execute": {"shell": "sh", "script_object": "lib/2", "timeout": "5s"},
        }
    )
    base = {"exec_id": "e", "request_id": "r", "address": Target(all=True), "issued_at": NOW}
    with pytest.raises(ValueError, match="sha256"):
        build_command(job, **base)  # type: ignore[arg-type]
    cmd = build_command(job, script_sha256="ab" * 32, **base)  # type: ignore[arg-type]
    assert cmd.script_object == "lib/2" and cmd.script_sha256 == "ab" * 32 and cmd.script is None


def test_script_file_must_be_inlined_first() -> None:
    job = parse_job(
        {
            "id": "j",
            "version": "1",
            "execute": {"shell": "sh", "script_file": "a.sh", "timeout": "5s"},
        },
        allow_script_file=True,
    )
    with pytest.raises(ValueError, match="inline"):
        build_command(job, exec_id="e", request_id="r", address=Target(all=True), issued_at=NOW)


def test_negative_jitter_rejected() -> None:
    with pytest.raises(ValueError):
        _build(jitter_s=-1.0)


def test_command_survives_the_wire() -> None:
    cmd = _build(schedule_id="s", nominal_time=NOW, max_timeout_s=60)
    assert decode(Command, encode(cmd)) == cmd


def test_adhoc_job() -> None:
    job = adhoc_job(
        "echo hi",
        timeout=timedelta(minutes=1),
        exec_id="0123456789abcdef0123",
        env={"X": "1"},
        cwd="/tmp",
    )
    assert job.id == "adhoc-0123456789ab"
    assert job.version == "1"
    assert job.execute.shell == "sh" and job.execute.script == "echo hi"
    assert job.timeout_seconds == 60
    assert job.execute.env == {"X": "1"} and job.execute.cwd == "/tmp"
    cmd = build_command(job, exec_id="e", request_id="r", address=Target(pcs=["a"]), issued_at=NOW)
    assert cmd.job_id == "adhoc-0123456789ab" and cmd.script == "echo hi"


def test_adhoc_job_obeys_the_manifest_rules() -> None:
    with pytest.raises(ValidationError):
        adhoc_job("x", timeout=timedelta(0), exec_id="abc")
    with pytest.raises(ValidationError):
        adhoc_job("x", shell="zsh", timeout=timedelta(seconds=1), exec_id="abc")  # type: ignore[arg-type]
