"""Output conventions: a list answer is JSON lines for scripts and one table for people."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kanade.cli import output

ITEMS: list[dict[str, Any]] = [{"id": "a", "n": 1}, {"id": "b", "n": None}]


def test_listing_as_json_prints_one_object_per_item(capsys: pytest.CaptureFixture[str]) -> None:
    output.listing(ITEMS, json_=True, title="things", columns=["id", "n"])
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == ITEMS


def test_listing_as_a_table_takes_cells_by_column_or_from_row(
    capsys: pytest.CaptureFixture[str],
) -> None:
    output.listing(ITEMS, json_=False, title="things", columns=["id", "n"])
    by_column = capsys.readouterr().out
    assert "things" in by_column and "a" in by_column and "None" not in by_column

    output.listing(ITEMS, json_=False, title=None, columns=["what"],
                   row=lambda i: (f"<{i['id']}>",))
    by_row = capsys.readouterr().out
    assert "<a>" in by_row and "<b>" in by_row


def test_cells_read_as_text_not_python_values() -> None:
    assert output.cell(["canary", "local"]) == "canary, local"
    assert output.cell({"mount": "/", "used": 0.5}) == "mount=/, used=0.5"
    assert output.cell(True) == "yes" and output.cell(None) == "" and output.cell(30.0) == "30"


def test_byte_counts_and_durations_for_people() -> None:
    assert output.size(262144) == "256 KiB"
    assert output.size(41_943_040) == "40 MiB" and output.size(1_500_000) == "1.4 MiB"
    assert output.size(None) == ""
    assert output.duration(30.0) == "30s" and output.duration(90) == "1m30s"
    assert output.duration(3600) == "1h" and output.duration(0.5) == "500ms"
    assert output.duration(0) == "0s" and output.duration(1.5) == "1s500ms"


def test_a_piped_table_is_not_folded_at_80_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delitem(vars(output), "out", raising=False)  # a fresh console for this stdout
    wide = "x" * 150
    output.table(None, ["id"], [(wide,)])
    assert wide in capsys.readouterr().out


def test_errors_are_one_json_object_under_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output, "JSON_ERRORS", True)
    output.fail("unknown pc 'x'", ["--pc: no pc named 'x'"])
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"error": "unknown pc 'x'",
                                        "details": ["--pc: no pc named 'x'"]}  # fmt: skip
    assert captured.err == ""


def test_a_piped_line_is_plain_text_without_rich(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delitem(vars(output), "out", raising=False)
    monkeypatch.delitem(vars(output), "err", raising=False)
    output.say(("pc-[1]", "bold"), "  ", ("exit 0", "green"))
    output.say("  | a\tb\r\x07 [red]not markup[/]")
    output.fail("no pc [x]", ["--pc: unknown"])
    captured = capsys.readouterr()
    # The text as given: styles dropped, brackets kept, tabs kept, rich's control codes gone.
    assert captured.out == "pc-[1]  exit 0\n  | a\tb [red]not markup[/]\n"
    assert captured.err == "error: no pc [x]\n  --pc: unknown\n"
    assert "out" not in vars(output) and "err" not in vars(output)  # no console was made


def test_a_terminal_line_is_styled_by_rich(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delitem(vars(output), "out", raising=False)
    output.say(("pc-[1]", "bold"), "  ", ("exit 0", "green"))
    out = capsys.readouterr().out
    assert "\x1b[1mpc-[1]\x1b[0m" in out and "\x1b[32mexit 0\x1b[0m" in out
    monkeypatch.delitem(vars(output), "out", raising=False)  # not kept for other tests
