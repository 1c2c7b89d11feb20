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
