"""``kanade group``: group membership in KV (add, rm, set, list), which agents follow
live."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient
from kanade.cli.common import JsonOpt, UrlOpt, guard

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Group membership in KV, followed live by the agents (no restart).\n\n"
        "Examples:\n\n"
        "  kanade group add web local-2 local-3\n\n"
        "  kanade group rm web local-3\n\n"
        "  kanade group set local-1 web canary\n\n"
        "  kanade group list"
    ),
)


def _print_membership(items: list[dict[str, Any]], json_: bool) -> None:
    for item in items:
        if json_:
            output.json_line(item)
        else:
            state = "changed" if item.get("changed") else "unchanged"
            groups = ", ".join(item.get("groups") or []) or "(none)"
            output.out.print(f"{item['pc_id']}: {groups} ({state})", markup=False)


@app.command("add")
def group_add(
    group: Annotated[str, typer.Argument(help="The group.")],
    pcs: Annotated[list[str], typer.Argument(help="pc ids to add.")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Add pcs to a group.

    Example: kanade group add web local-2
    """

    def go() -> None:
        with ApiClient(url) as api:
            res = api.post(f"/api/groups/{group}/members", {"pcs": pcs})
        _print_membership(res.get("items", []), json_)

    guard(go)


@app.command("rm")
def group_rm(
    group: Annotated[str, typer.Argument(help="The group.")],
    pcs: Annotated[list[str], typer.Argument(help="pc ids to remove.")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Remove pcs from a group (groups given by an agent's own --group flags stay).

    Example: kanade group rm web local-2
    """

    def go() -> None:
        with ApiClient(url) as api:
            items = [api.delete(f"/api/groups/{group}/members/{pc}") for pc in pcs]
        _print_membership(items, json_)

    guard(go)


@app.command("set")
def group_set(
    pc_id: Annotated[str, typer.Argument(help="The pc.")],
    groups: Annotated[list[str] | None, typer.Argument(help="Its groups (none = clear).")] = None,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Set a pc's complete group list.

    Example: kanade group set local-1 web canary
    """

    def go() -> None:
        with ApiClient(url) as api:
            res = api.put(f"/api/groups/{pc_id}", {"groups": groups or []})
        _print_membership([res], json_)

    guard(go)


@app.command("list")
def group_list(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """List groups: members from KV, and agents that report the group.

    Example: kanade group list
    """

    def go() -> None:
        with ApiClient(url) as api:
            items = api.get("/api/groups").get("items", [])
        output.listing(
            items,
            json_=json_,
            title="groups",
            columns=["group", "members (KV)", "reported by agents"],
            row=lambda g: (
                g["group"], ",".join(g["members"]) or "-", ",".join(g["reported"]) or "-"
            ),
        )

    guard(go)
