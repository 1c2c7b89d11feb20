"""Job manifests at the write boundary (SPEC §2.1, §2.3): every rule accepted and
rejected, with the exact path reported."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from core.documents import changed, field_errors
from kanade.core.models.job import JobManifest
from kanade.core.validation import DocumentInvalid, FieldError, load_document, parse_job

VALID: dict[str, Any] = {
    "id": "disk-report",
    "version": "3",
    "description": "Disk usage",
    "tags": ["inventory"],
    "execute": {"shell": "bash", "script": "df -h", "timeout": "30s"},
}


def job(**changes: Any) -> dict[str, Any]:
    """VALID with dotted-path changes applied (value ``...`` deletes the key)."""
    return changed(VALID, **changes)


def errors(data: object, **kw: Any) -> dict[str, str]:
    return field_errors(parse_job, "job", data, **kw)


def test_minimal_valid_manifest() -> None:
    m = parse_job(VALID)
    assert m.id == "disk-report"
    assert m.execute.timeout == timedelta(seconds=30)
    assert m.timeout_seconds == 30.0
    assert m.staleness.mode == "cached"
    assert m.require_approval is False
    assert m.execute.run_as == "system"


def test_full_manifest_from_yaml() -> None:
    text = """
id: os-facts
version: "2024.1"
description: OS facts
tags: [inventory, os]
execute:
  shell: python
  script_object: os-facts/7
  timeout: 1h30m
  run_as: user
  cwd: /tmp
  env: {LANG: C, "MY VAR": "1"}
staleness: {mode: strict, max_cache_age: 10m}
require_approval: true
inventory: {display: [os, kernel], summary: [os]}
check: {name: os-supported}
"""
    m = parse_job(load_document(text, kind="job"))
    assert m.execute.script_object == "os-facts/7"
    assert m.timeout_seconds == 5400
    assert m.staleness.max_cache_age == timedelta(minutes=10)
    assert m.check is not None and m.check.status_field == "status"
    assert m.check.detail_field == "detail"
    assert m.inventory is not None and m.inventory.display == ["os", "kernel"]


def test_bad_timeout_and_unknown_field_both_reported() -> None:
    data = job(execute__timeout="10 minutes", colour="red")
    errs = errors(data)
    assert errs == {
        "colour": "unknown field",
        "execute.timeout": (
            '"10 minutes" is not a duration (use e.g. 500ms, 30s, 10m, 6h, 1d or 1h30m)'
        ),
    }


def test_unknown_nested_field_with_suggestion() -> None:
    errs = errors(job(execute__timout="5s"))
    assert errs == {"execute.timout": 'unknown field (did you mean "timeout"?)'}


def test_unknown_fields_reported_even_when_model_cannot_be_built() -> None:
    errs = errors({"execute": {"bogus": 1}, "other": 2})
    assert errs["execute.bogus"].startswith("unknown field")
    assert errs["other"] == "unknown field"
    assert errs["id"] == "required"
    assert errs["version"] == "required"
    assert errs["execute.shell"] == "required"
    assert errs["execute.timeout"] == "required"


def test_tolerant_mode_ignores_unknown_fields_and_drops_them() -> None:
    data = job(colour="red", execute__future_option=True)
    m = parse_job(data, strict=False)
    assert m.model_extra == {}
    assert m.execute.model_extra == {}
    assert "colour" not in m.model_dump()


def test_tolerant_mode_still_validates_everything_else() -> None:
    errs = errors(job(colour="red", execute__timeout="soon"), strict=False)
    assert list(errs) == ["execute.timeout"]


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"id": ...}, "id"),
        ({"id": "has space"}, "id"),
        ({"id": "a.b"}, "id"),
        ({"id": ""}, "id"),
        ({"version": ...}, "version"),
        ({"version": ""}, "version"),
        ({"version": 1.1}, "version"),
        ({"version": 3}, "version"),
        ({"tags": "x"}, "tags"),
        ({"execute": ...}, "execute"),
        ({"execute": "run it"}, "execute"),
        ({"execute__shell": "zsh"}, "execute.shell"),
        ({"execute__shell": ...}, "execute.shell"),
        ({"execute__timeout": ...}, "execute.timeout"),
        ({"execute__timeout": "0s"}, "execute.timeout"),
        ({"execute__timeout": 30}, "execute.timeout"),
        ({"execute__run_as": "root"}, "execute.run_as"),
        ({"execute__env": {"PORT": 8080}}, "execute.env.PORT"),
        ({"execute__env": {"A=B": "x"}}, "execute.env"),
        ({"execute__env": ["A=B"]}, "execute.env"),
        ({"execute__script_object": "no-version"}, "execute.script_object"),
        ({"staleness": {"mode": "strict"}}, "staleness.max_cache_age"),
        ({"staleness": {"mode": "cached", "max_cache_age": "5m"}}, "staleness.max_cache_age"),
        ({"staleness": {"mode": "sometimes"}}, "staleness.mode"),
        ({"require_approval": "yes"}, "require_approval"),
        ({"inventory": {"display": "os"}}, "inventory.display"),
        ({"check": {}}, "check.name"),
        ({"check": {"name": ""}}, "check.name"),
    ],
)
def test_rejected_with_path(changes: dict[str, Any], path: str) -> None:
    # The script fields are handled separately (exactly-one-of).
    errs = errors(job(**changes))
    assert path in errs, errs


def test_version_number_tells_to_quote() -> None:
    assert "quotes" in errors(job(version=1.1))["version"]


def test_env_number_tells_to_quote() -> None:
    assert "quotes" in errors(job(execute__env={"PORT": 8080}))["execute.env.PORT"]


@pytest.mark.parametrize("shell", ["sh", "bash", "pwsh", "powershell", "cmd", "python"])
def test_every_shell_accepted(shell: str) -> None:
    assert parse_job(job(execute__shell=shell)).execute.shell == shell


@pytest.mark.parametrize("mode", ["cached", "unchecked"])
def test_staleness_modes_without_age(mode: str) -> None:
    assert parse_job(job(staleness={"mode": mode})).staleness.mode == mode


def test_staleness_strict_needs_age() -> None:
    m = parse_job(job(staleness={"mode": "strict", "max_cache_age": "0s"}))
    assert m.staleness.max_cache_age == timedelta(0)


# --- exactly one of script / script_file / script_object --------------------------------------
def test_no_script_rejected() -> None:
    errs = errors(job(execute__script=...))
    assert errs == {"execute": "set exactly one of script, script_file or script_object (got none)"}


def test_two_scripts_rejected() -> None:
    errs = errors(job(execute__script_object="lib/1"))
    assert errs == {
        "execute": (
            "set exactly one of script, script_file or script_object (got script and script_object)"
        )
    }


def test_script_object_alone_accepted() -> None:
    m = parse_job(job(execute__script=..., execute__script_object="lib/1.2"))
    assert m.execute.script_object == "lib/1.2"


def test_script_file_rejected_by_the_api() -> None:
    errs = errors(job(execute__script=..., execute__script_file="report.sh"))
    assert errs == {
        "execute.script_file": (
            "the API does not accept script_file; the CLI inlines it at upload "
            "(send script or script_object instead)"
        )
    }


def test_script_file_accepted_for_the_cli() -> None:
    data = job(execute__script=..., execute__script_file="report.sh")
    m = parse_job(data, allow_script_file=True)
    assert m.execute.script_file == "report.sh"


def test_empty_inline_script_is_a_script() -> None:
    # An empty script is odd but explicit; only *absence* breaks exactly-one-of.
    assert parse_job(job(execute__script="")).execute.script == ""


# --- error object -----------------------------------------------------------------------------
def test_document_invalid_str_and_dict() -> None:
    with pytest.raises(DocumentInvalid) as exc:
        parse_job(job(execute__timeout="10 minutes", colour="red"))
    err = exc.value
    assert isinstance(err, ValueError)
    lines = str(err).splitlines()
    assert lines[0] == "invalid job (2 errors):"
    assert "  colour: unknown field" in lines
    assert err.to_dict()["error"] == "invalid job"
    assert {"path": "colour", "reason": "unknown field"} in err.to_dict()["errors"]


def test_field_error_str() -> None:
    assert str(FieldError("execute.timeout", "required")) == "execute.timeout: required"


def test_reasons_carry_no_pydantic_noise() -> None:
    errs = errors({"id": 5, "version": [], "execute": {"shell": 1, "timeout": "x"}})
    for reason in errs.values():
        assert "Value error" not in reason
        assert "Input should be" not in reason
        assert "pydantic" not in reason


@pytest.mark.parametrize("data", [None, [], "text", 42, [{"id": "x"}]])
def test_non_mapping_top_level(data: object) -> None:
    assert list(errors(data)) == ["(document)"]


def test_round_trip_through_json() -> None:
    m = parse_job(VALID)
    again = parse_job(m.model_dump(mode="json"))
    assert again == m


def test_reader_without_context_accepts_script_file() -> None:
    # The plain model is the tolerant reader: rejecting script_file is the API's job.
    data = job(execute__script=..., execute__script_file="x.sh")
    assert JobManifest.model_validate(data).execute.script_file == "x.sh"


# --- load_document ----------------------------------------------------------------------------
def load_errors(text: str | bytes) -> list[FieldError]:
    with pytest.raises(DocumentInvalid) as exc:
        load_document(text, kind="job")
    assert exc.value.kind == "job"
    return exc.value.errors


def test_load_yaml_and_json() -> None:
    assert load_document("a: 1\nb: [x, y]\n") == {"a": 1, "b": ["x", "y"]}
    assert load_document('{"a": 1}') == {"a": 1}
    assert load_document(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}  # UTF-8 BOM


def test_load_syntax_error_has_line_and_column() -> None:
    (err,) = load_errors("id: x\nexecute: [\n")
    assert err.path == "(document)"
    assert "line 3, column 1" in err.reason


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ("null", "empty"),
        ("- a\n- b\n", "not a list"),
        ("just text", "not text"),
        ("42", "not a number"),
        (b"\xff\xfeid: x", "not UTF-8"),
        ("a: 1\n---\nb: 2\n", "single document"),
        ("a: !!python/object:os.system x", "not valid YAML"),
        ("a: \x00", "not valid YAML"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ("[" * 5000, "not valid YAML"),
    ],
)
def test_load_rejections(text: str | bytes, needle: str) -> None:
    (err,) = load_errors(text)
    assert err.path == "(document)"
    assert needle in err.reason


def test_load_rejects_huge_documents() -> None:
    (err,) = load_errors("a: " + "x" * (3 * 1024 * 1024))
    assert "larger than" in err.reason


def test_document_invalid_pickles() -> None:
    import pickle

    err = DocumentInvalid([FieldError("a", "b")], "job")
    again = pickle.loads(pickle.dumps(err))
    assert again.errors == err.errors and again.kind == "job" and str(again) == str(err)
