"""Output conventions shared by every verb: rich for people, JSON lines for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def json_line(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    t = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    out.print(t)


def listing(
    items: Iterable[Mapping[str, Any]],
    *,
    json_: bool,
    title: str | None,
    columns: Sequence[str],
    row: Callable[[Mapping[str, Any]], Sequence[Any]] | None = None,
) -> None:
    """A list answer: one JSON object per item for scripts, else one table.

    ``row`` turns an item into its cells; without it the cells are the item's values
    for ``columns``.
    """
    if json_:
        for item in items:
            json_line(item)
        return
    cells = row or (lambda item: [item.get(c) for c in columns])
    table(title, columns, [cells(item) for item in items])


def fail(message: str, details: Sequence[str] = ()) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}")
    for d in details:
        err.print(f"  {d}", markup=False)
