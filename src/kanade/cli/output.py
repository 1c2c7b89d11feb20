"""Output conventions shared by every verb: rich for people, JSON lines for scripts.

The consoles (``output.out``, ``output.err``) are made on first use: a ``--json`` verb never
imports rich (start-up time, docs/performance.md). Off a terminal (a pipe, a log) nothing
wraps at 80 columns: a line is as long as its content unless ``$COLUMNS`` says otherwise.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    out: Console
    err: Console

_UNWRAPPED = 100_000
"""Console width off a terminal: wide enough that no table or line is ever folded."""

JSON_ERRORS = False
"""Set by the entry point when the command line asks for ``--json``: errors are then
printed as one JSON object too (see :func:`fail`)."""


def _console(stderr: bool) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and not os.environ.get("COLUMNS"):
        width = _UNWRAPPED
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def console(stderr: bool = False) -> Console:
    """The stdout (or stderr) console, made on first use."""
    name = "err" if stderr else "out"
    made: Console | None = globals().get(name)
    if made is None:
        made = _console(stderr)
        globals()[name] = made
    return made


def __getattr__(name: str) -> Any:
    if name in ("out", "err"):
        return console(name == "err")
    raise AttributeError(name)


Part = str | tuple[str, str]
"""A piece of a :func:`say` line: plain text, or ``(text, rich style)``."""

# What rich's Text drops from printed text (bell, backspace, vertical tab, form feed,
# carriage return): the plain path drops the same, so a piped line equals the terminal's.
_CONTROL_STRIP = dict.fromkeys((7, 8, 11, 12, 13))


def is_terminal(stderr: bool = False) -> bool:
    """Whether stdout (stderr) is a terminal, as its rich console would say, without
    importing rich when no console exists yet."""
    made = globals().get("err" if stderr else "out")
    if made is not None:
        return bool(made.is_terminal)
    if os.environ.get("FORCE_COLOR"):
        return True  # rich's force_terminal
    return (sys.stderr if stderr else sys.stdout).isatty()


def say(*parts: Part, stderr: bool = False) -> None:
    """One line of text; styles show on a terminal only. The text is never read as markup
    (no escaping needed), and off a terminal rich is not imported: a piped ``kanade run``
    starts ~30 ms sooner (docs/performance.md)."""
    if is_terminal(stderr):
        from rich.text import Text

        console(stderr).print(Text.assemble(*parts))
        return
    stream = sys.stderr if stderr else sys.stdout
    # A live bar on the other stream redirects this one through rich's proxy (to keep its
    # lines above the bar); a piped line goes to the real file, as rich's console does.
    stream = getattr(stream, "rich_proxied_file", stream)
    text = "".join(p if isinstance(p, str) else p[0] for p in parts)
    stream.write(text.translate(_CONTROL_STRIP) + "\n")
    stream.flush()


def json_line(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def size(n: Any) -> str:
    """A byte count for people: ``256 KiB``, ``41.2 MiB`` (blank when unknown)."""
    if n is None or isinstance(n, bool) or not isinstance(n, (int, float)):
        return "" if n is None else str(n)
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            text = f"{value:.0f}" if unit == "B" or value.is_integer() else f"{value:.1f}"
            return f"{text} {unit}"
        value /= 1024
    return str(n)  # pragma: no cover - the loop always returns


def duration(seconds: float) -> str:
    """Seconds in the duration grammar: ``30.0`` → ``30s``, ``90`` → ``1m30s``."""
    from datetime import timedelta

    from kanade.core.duration_text import format_duration

    return format_duration(timedelta(seconds=seconds))


def cell(value: Any) -> str:
    """A table cell for people: lists joined, mappings as ``key=value``, no Python repr."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    return str(value)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from rich.table import Table

    t = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[cell(v) for v in r])
    console().print(t)


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


def fail(
    message: str, details: Sequence[str] = (), *, as_json: dict[str, Any] | None = None
) -> None:
    """An error: one JSON object on stdout under ``--json`` (``as_json``, else the message
    and details), else one red line on stderr plus a line per detail."""
    if JSON_ERRORS:
        json_line(as_json or {"error": message, **({"details": list(details)} if details else {})})
        return
    say(("error:", "bold red"), f" {message}", stderr=True)
    for d in details:
        say(f"  {d}", stderr=True)


def warn(message: str) -> None:
    """A warning for people (stderr); under ``--json`` the answer itself carries it."""
    if JSON_ERRORS:
        return
    say(("warning:", "yellow"), f" {message}", stderr=True)
