"""``kanade freeze``: the fleet-wide freeze of scheduled fires (set, clear, status);
manual execs still run."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient
from kanade.cli.common import JsonOpt, UrlOpt, guard

app = typer.Typer(no_args_is_help=True, help="Fleet-wide freeze of scheduled fires.")


def _print_freeze(view: dict[str, Any], json_: bool) -> None:
    if json_:
        output.json_line(view)
        return
    f = view.get("freeze")
    if not f:
        output.out.print("not frozen", markup=False)
        return
    state = "FROZEN now" if view.get("frozen") else "not frozen now"
    output.out.print(
        f"{state}: from {f.get('from') or '-'} until {f.get('until') or 'cleared'}; "
        f"by {f.get('by')}: {f.get('reason') or '(no reason)'}",
        markup=False,
    )


@app.command("set")
def freeze_set(
    from_: Annotated[str | None, typer.Option("--from", help="ISO time with zone.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO time with zone.")] = None,
    reason: Annotated[str, typer.Option("--reason")] = "",
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Freeze scheduled fires (manual execs still run).

    Example: kanade freeze set --until 2026-12-27T08:00:00+01:00 --reason "holidays"
    """

    def go() -> None:
        body: dict[str, Any] = {"reason": reason}
        if from_:
            body["from"] = from_
        if until:
            body["until"] = until
        with ApiClient(url) as api:
            _print_freeze(api.request("PUT", "/api/freeze", json=body), json_)

    guard(go)


@app.command("clear")
def freeze_clear(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Lift the freeze."""

    def go() -> None:
        with ApiClient(url) as api:
            _print_freeze(api.request("DELETE", "/api/freeze"), json_)

    guard(go)


@app.command("status")
def freeze_status(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Show the freeze."""

    def go() -> None:
        with ApiClient(url) as api:
            _print_freeze(api.get("/api/freeze"), json_)

    guard(go)
