"""Stop controls and fleet state verbs: revoke, unrevoke, kill, ping, config, group,
``job delete`` and ``results output``.

Registered on the main app by :func:`register` (called at the end of ``cli/main.py``),
with the same conventions as every other verb: rich for people, ``--json`` for scripts,
one-line errors, non-zero exit on failure.
"""

from __future__ import annotations

import inspect
import json
import sys
from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient, CliError
from kanade.cli.common import JsonOpt, UrlOpt, guard

GlobalOpt = Annotated[bool, typer.Option("--global", help="The global layer (every agent).")]
GroupLayerOpt = Annotated[str | None, typer.Option("--group", "-g", help="A group's layer.")]
PcLayerOpt = Annotated[str | None, typer.Option("--pc", "-p", help="One pc's layer.")]






def _layer_path(global_: bool, group: str | None, pc: str | None) -> str:
    chosen = [x for x in (global_ and "global", group, pc) if x]
    if len(chosen) != 1:
        raise CliError("pick exactly one layer: --global, --group G or --pc ID")
    if global_:
        return "/api/config/global"
    if group:
        return f"/api/config/group/{group}"
    return f"/api/config/pc/{pc}"


def _parse_value(text: str) -> Any:
    """``10`` → 10, ``1.5`` → 1.5, ``null`` → None, ``"x"``/``x`` → "x"."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


# --- revoke / unrevoke / kill / ping ------------------------------------------------------
def revoke(
    job_id: Annotated[str, typer.Argument(help="The job to revoke.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the audit).")] = None,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Revoke a job: agents skip it (exit 126), even offline ones when they return.

    Example: kanade revoke disk-cleanup --reason "deletes too much"
    """

    def go() -> None:
        with ApiClient(url) as api:
            res = api.post(f"/api/jobs/{job_id}/revoke", {"reason": reason} if reason else None)
        if json_:
            output.json_line(res)
        else:
            output.out.print(
                f"job {job_id} revoked"
                + (f" ({reason})" if reason else "")
                + f"; lift with `kanade unrevoke {job_id}`",
                markup=False,
            )

    guard(go)


def unrevoke(
    job_id: Annotated[str, typer.Argument(help="The job to allow again.")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Lift a job's revocation.

    Example: kanade unrevoke disk-cleanup
    """

    def go() -> None:
        with ApiClient(url) as api:
            res = api.post(f"/api/jobs/{job_id}/unrevoke")
        if json_:
            output.json_line(res)
        elif res.get("was_revoked"):
            output.out.print(f"job {job_id} is no longer revoked", markup=False)
        else:
            output.out.print(f"job {job_id} was not revoked; nothing to do", markup=False)

    guard(go)


def revocations(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """List revoked jobs.

    Example: kanade revocations --json
    """

    def go() -> None:
        with ApiClient(url) as api:
            items = api.get("/api/revocations").get("items", [])
        if json_:
            for r in items:
                output.json_line(r)
            return
        output.table(
            "revoked jobs",
            ["job", "revoked at", "by", "reason"],
            [(r["job_id"], r.get("revoked_at"), r.get("by"), r.get("reason")) for r in items],
        )

    guard(go)


def kill(
    exec_id: Annotated[str, typer.Argument(help="The execution to kill.")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Kill an execution: running scripts end (exit -1), queued copies are cancelled.

    Example: kanade kill 01J9Z8X4K2M7
    """

    def go() -> None:
        with ApiClient(url) as api:
            res = api.post(f"/api/executions/{exec_id}/kill")
        if json_:
            output.json_line(res)
            return
        output.out.print(
            f"exec {exec_id}: kill sent to the fleet; {res.get('cancelled_queued', 0)} queued "
            f"cop{'y' if res.get('cancelled_queued') == 1 else 'ies'} cancelled; "
            f"status {res.get('status')}",
            markup=False,
        )

    guard(go)


def ping(
    pc_id: Annotated[str, typer.Argument(help="The agent's pc id.")],
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 5.0,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Ask one agent for a fresh heartbeat (request/reply over NATS).

    Exits 1 with "no answer from PC in N s" when it does not answer.

    Example: kanade ping local-1 --timeout 2
    """

    def go() -> None:
        if timeout <= 0 or timeout > 60:
            raise CliError("--timeout: must be > 0 and <= 60 seconds")
        with ApiClient(url, timeout=timeout + 10) as api:
            hb = api.request(
                "POST", f"/api/agents/{pc_id}/ping", params={"timeout": f"{timeout:g}"}
            )
        if json_:
            output.json_line(hb)
            return
        output.out.print(
            f"[bold]{hb['pc_id']}[/] answered in {hb.get('rtt_ms', 0):.0f} ms: "
            f"agent {hb.get('agent_version')} on {hb.get('hostname')} "
            f"({hb.get('os_family')} {hb.get('os_version', '')})".rstrip()
        )
        output.table(
            None,
            ["sent at", "groups", "running", "queued", "cpu %", "rss MB", "last command"],
            [
                (
                    hb.get("sent_at"),
                    ",".join(hb.get("groups") or []) or "-",
                    hb.get("running"),
                    hb.get("queue_length"),
                    hb.get("cpu_percent"),
                    round(int(hb.get("rss_bytes") or 0) / 1e6, 1),
                    hb.get("last_command_at") or "-",
                )
            ],
        )

    guard(go)


# --- config -------------------------------------------------------------------------------
config_app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Agent config layers, applied live: defaults → global → groups → pc.\n\n"
        "Examples:\n\n"
        "  kanade config set --global heartbeat_interval 10\n\n"
        "  kanade config set --pc local-1 max_local_concurrent 1\n\n"
        "  kanade config effective local-1"
    ),
)


@config_app.command("get")
def config_get(
    global_: GlobalOpt = False,
    group: GroupLayerOpt = None,
    pc: PcLayerOpt = None,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Show one layer, or every layer when none is picked.

    Example: kanade config get --group web
    """

    def go() -> None:
        with ApiClient(url) as api:
            if global_ or group or pc:
                layer = api.get(_layer_path(global_, group, pc))
                layers = {layer["layer"]: layer["settings"]}
            else:
                layers = api.get("/api/config")["layers"]
        if json_:
            for name, settings in sorted(layers.items()):
                output.json_line({"layer": name, "settings": settings})
            return
        rows = [
            (name, key, _show(value))
            for name, settings in sorted(layers.items())
            for key, value in sorted(settings.items())
        ]
        if not rows:
            output.out.print("no settings in this layer (defaults apply)", markup=False)
            return
        output.table("config", ["layer", "key", "value"], rows)

    guard(go)


@config_app.command(
    "set", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": True}
)
def config_set(
    key: Annotated[str, typer.Argument(help="Setting, e.g. heartbeat_interval.")],
    value: Annotated[str, typer.Argument(help="Value (JSON scalar or plain text).")],
    global_: GlobalOpt = False,
    group: GroupLayerOpt = None,
    pc: PcLayerOpt = None,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Set one setting in a layer; agents apply it live. Exit 1 names a bad key/value.

    Settings: heartbeat_interval (s), max_local_concurrent, log_level, max_output_bytes,
    target_version, target_version_jitter (s).

    Example: kanade config set --pc local-1 heartbeat_interval 1
    """

    def go() -> None:
        path = _layer_path(global_, group, pc)
        with ApiClient(url) as api:
            res = api.put(path, {key: _parse_value(value)})
        if json_:
            output.json_line(res)
        else:
            output.out.print(
                f"{res['layer']}: {key} = {_show(res['settings'].get(key))}", markup=False
            )

    guard(go)


@config_app.command("unset")
def config_unset(
    keys: Annotated[list[str] | None, typer.Argument(help="Settings to remove.")] = None,
    global_: GlobalOpt = False,
    group: GroupLayerOpt = None,
    pc: PcLayerOpt = None,
    all_keys: Annotated[bool, typer.Option("--all-keys", help="Remove the whole layer.")] = False,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Remove settings from a layer (the next layer down applies again).

    Example: kanade config unset --pc local-1 heartbeat_interval
    """

    def go() -> None:
        if not keys and not all_keys:
            raise CliError("name the settings to remove, or pass --all-keys to drop the layer")
        path = _layer_path(global_, group, pc)
        with ApiClient(url) as api:
            res = api.request("DELETE", path, params={"key": keys or []})
        if json_:
            output.json_line(res)
        else:
            removed = ", ".join(res.get("removed") or []) or "nothing"
            output.out.print(f"{res['layer']}: removed {removed}", markup=False)

    guard(go)


@config_app.command("effective")
def config_effective(
    pc_id: Annotated[str, typer.Argument(help="The agent's pc id.")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Show what one agent applies, and which layer each value comes from.

    Example: kanade config effective local-1
    """

    def go() -> None:
        with ApiClient(url) as api:
            eff = api.get(f"/api/agents/{pc_id}/config")
        if json_:
            output.json_line(eff)
            return
        groups = ",".join(eff.get("groups") or []) or "-"
        output.table(
            f"effective config of {pc_id} (groups: {groups})",
            ["key", "value", "source"],
            [(k, _show(v), eff["sources"].get(k, "?")) for k, v in sorted(eff["values"].items())],
        )
        if eff.get("note"):
            output.out.print(f"note: {eff['note']}", markup=False)
        for w in eff.get("warnings") or []:
            output.err.print(f"[yellow]warning:[/] {w}", highlight=False)

    guard(go)


# --- groups -------------------------------------------------------------------------------
group_app = typer.Typer(
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


@group_app.command("add")
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


@group_app.command("rm")
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


@group_app.command("set")
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


@group_app.command("list")
def group_list(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """List groups: members from KV, and agents that report the group.

    Example: kanade group list
    """

    def go() -> None:
        with ApiClient(url) as api:
            items = api.get("/api/groups").get("items", [])
        if json_:
            for g in items:
                output.json_line(g)
            return
        output.table(
            "groups",
            ["group", "members (KV)", "reported by agents"],
            [
                (g["group"], ",".join(g["members"]) or "-", ",".join(g["reported"]) or "-")
                for g in items
            ],
        )

    guard(go)


# --- job delete / results output ----------------------------------------------------------
def job_delete(
    job_id: Annotated[str, typer.Argument(help="The job to delete.")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Delete a job from the catalog; it is revoked too, so no agent runs a queued copy.

    Example: kanade job delete disk-cleanup
    """

    def go() -> None:
        with ApiClient(url) as api:
            res = api.delete(f"/api/jobs/{job_id}")
        if json_:
            output.json_line(res)
        else:
            output.out.print(
                f"job {job_id} (version {res.get('version')}) deleted and revoked; "
                f"`kanade unrevoke {job_id}` before uploading it again",
                markup=False,
            )

    guard(go)


def results_output(
    result_id: Annotated[str, typer.Argument(help="The result id.")],
    stderr: Annotated[bool, typer.Option("--stderr", help="stderr instead of stdout.")] = False,
    url: UrlOpt = None,
) -> None:
    """Print a result's FULL stdout (or --stderr), byte for byte, however large.

    Example: kanade results output 01J9Z8X4K2M7-local-1 > out.txt
    """

    def go() -> None:
        stream = "stderr" if stderr else "stdout"
        with ApiClient(url) as api:
            data = api.get_bytes(f"/api/results/{result_id}/output/{stream}")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    guard(go)


# --- registration -------------------------------------------------------------------------
def _find_group(app: typer.Typer, name: str) -> typer.Typer | None:
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    return None


def _results_group(app: typer.Typer) -> typer.Typer:
    """``results`` as a group (so ``results output ID`` exists) that still lists results
    when called without a sub-command, with the same options as before."""
    existing = _find_group(app, "results")
    if existing is not None:
        return existing
    listing = None
    for info in list(app.registered_commands):
        command = info.callback
        name = info.name or (command.__name__.replace("_", "-") if command else None)
        if name == "results" and command is not None:
            listing = command
            app.registered_commands.remove(info)
            break
    group = typer.Typer(help="Results: list recent ones (no sub-command), or show full output.")
    if listing is None:
        app.add_typer(group, name="results")
        return group
    original = listing
    signature = inspect.signature(original, eval_str=True)

    def callback(ctx: typer.Context, **kwargs: Any) -> None:
        if ctx.invoked_subcommand is None:
            original(**kwargs)

    ctx_param = inspect.Parameter(
        "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
    )
    callback.__signature__ = signature.replace(  # type: ignore[attr-defined,unused-ignore]
        parameters=[ctx_param, *signature.parameters.values()]
    )
    callback.__doc__ = original.__doc__
    group.callback(invoke_without_command=True)(callback)
    app.add_typer(group, name="results")
    return group


def register(app: typer.Typer) -> None:
    app.command("revoke")(revoke)
    app.command("unrevoke")(unrevoke)
    app.command("revocations")(revocations)
    app.command("kill")(kill)
    app.command("ping")(ping)
    app.add_typer(config_app, name="config")
    app.add_typer(group_app, name="group")
    job_group = _find_group(app, "job")
    if job_group is not None:
        job_group.command("delete")(job_delete)
    _results_group(app).command("output")(results_output)
