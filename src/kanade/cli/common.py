"""What every CLI verb shares: option types and the one-line error convention."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient, CliError

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", envvar="KANADE_URL", help="Backend URL (default http://127.0.0.1:8080)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every agent.")]
GroupOpt = Annotated[list[str] | None, typer.Option("--group", "-g", help="A group (repeatable).")]
PcOpt = Annotated[list[str] | None, typer.Option("--pc", "-p", help="A pc id (repeatable).")]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, max=1000)]


ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Use pc, group or job names the backend does not know (a pc that has not "
        "connected yet); without it they are refused with the closest known names.",
    ),
]


def guard(fn: Callable[[], Any]) -> None:
    """Run a verb's body; a CliError becomes one line (plus field paths) — one JSON object
    under ``--json`` — and its exit code."""
    try:
        fn()
    except CliError as exc:
        output.fail(exc.message, exc.details, as_json=exc.to_dict())
        raise typer.Exit(exc.code) from None


def page_items(page: Any) -> list[dict[str, Any]]:
    """The rows of a list answer (``{"items": [...]}``) or a bare list."""
    if isinstance(page, dict):
        return list(page.get("items", []))
    return list(page or [])


def list_from_api(
    url: str | None,
    path: str,
    params: Mapping[str, Any],
    *,
    json_: bool,
    title: str,
    columns: Sequence[str],
    row: Callable[[Mapping[str, Any]], Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """GET a list answer and print its rows (:func:`output.listing`); returns the rows."""
    with ApiClient(url) as api:
        items = page_items(api.get(path, **params))
    output.listing(items, json_=json_, title=title, columns=columns, row=row)
    return items
