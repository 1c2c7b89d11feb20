"""``kanade group``: group membership in KV (add, rm, set, list), which agents follow
live."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient, CliError
from kanade.cli.common import ForceOpt, JsonOpt, UrlOpt, guard

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
            flags = item.get("agent_flag_groups") or []
            also = f"; from its own --group flags: {', '.join(flags)}" if flags else ""
            output.out.print(f"{item['pc_id']}: {groups} ({state}){also}", markup=False)


@app.command("add")
def group_add(
    group: Annotated[str, typer.Argument(help="The group.")],
    pcs: Annotated[list[str], typer.Argument(help="pc ids to add.")],
    force: ForceOpt = False,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Add pcs to a group (a new group name is fine; a pc the backend does not know is
    refused with the closest pc ids unless --force).

    Example: kanade group add web local-2
    """

    def go() -> None:
        with ApiClient(url, options={"pcs": "PC"}) as api:
            res = api.post(f"/api/groups/{group}/members", {"pcs": pcs}, force=force or None)
        _print_membership(res.get("items", []), json_)

    guard(go)


@app.command("rm")
def group_rm(
    group: Annotated[str, typer.Argument(help="The group.")],
    pcs: Annotated[list[str], typer.Argument(help="pc ids to remove.")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Remove pcs from a group. A group an agent has from its own --group flags is not
    in KV and cannot be removed here: that is said, and the exit code is 1.

    Example: kanade group rm web local-2
    """

    def go() -> None:
        with ApiClient(url) as api:
            items = [api.delete(f"/api/groups/{group}/members/{pc}") for pc in pcs]
        _print_membership(items, json_)
        flagged = [i["pc_id"] for i in items if group in (i.get("agent_flag_groups") or [])]
        if flagged:
            raise CliError(
                f"{', '.join(flagged)}: group {group} comes from the agent's own --group flag "
                "(or its config file), not from KV; restart the agent without it to remove it"
            )

    guard(go)


@app.command("set")
def group_set(
    pc_id: Annotated[str, typer.Argument(help="The pc.")],
    groups: Annotated[list[str] | None, typer.Argument(help="Its groups (none = clear).")] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Set a pc's complete group list (a pc the backend does not know is refused with the
    closest pc ids unless --force).

    Example: kanade group set local-1 web canary
    """

    def go() -> None:
        with ApiClient(url, options={"pc_id": "PC_ID", "groups": "GROUPS"}) as api:
            res = api.put(f"/api/groups/{pc_id}", {"groups": groups or []}, force=force or None)
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
