"""``kanade config``: the agent config layers (defaults → global → groups → pc), which
agents apply live; get, set, unset a layer's settings and show one agent's effective
config."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient, CliError
from kanade.cli.common import ForceOpt, JsonOpt, UrlOpt, guard

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


_DURATIONS = ("heartbeat_interval", "target_version_jitter")
_SOURCES = {"local": "agent flag / config file"}
"""How ``config effective`` names a source: the API's ``local`` is what the agent was
started with."""


def show_setting(value: Any, key: str = "") -> str:
    """A setting's value for people: durations as ``30s``, byte counts as ``256 KiB``."""
    if key in _DURATIONS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return output.duration(float(value))
    if key.endswith("_bytes") and isinstance(value, int) and not isinstance(value, bool):
        return f"{output.size(value)} ({value})"
    if value is None:
        return "-"
    return json.dumps(value) if not isinstance(value, str) else value


app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Agent config layers, applied live: defaults → global → groups → pc.\n\n"
        "Examples:\n\n"
        "  kanade config set --global heartbeat_interval 10s\n\n"
        "  kanade config set --pc local-1 max_local_concurrent 1\n\n"
        "  kanade config effective local-1"
    ),
)


@app.command("get")
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
            (name, key, show_setting(value, key))
            for name, settings in sorted(layers.items())
            for key, value in sorted(settings.items())
        ]
        if not rows:
            output.out.print("no settings in this layer (defaults apply)", markup=False)
            return
        output.table("config", ["layer", "key", "value"], rows)

    guard(go)


@app.command(
    "set", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": True}
)
def config_set(
    key: Annotated[str, typer.Argument(help="Setting, e.g. heartbeat_interval.")],
    value: Annotated[str, typer.Argument(help="Value (JSON scalar or plain text).")],
    global_: GlobalOpt = False,
    group: GroupLayerOpt = None,
    pc: PcLayerOpt = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Set one setting in a layer; agents apply it live. Exit 1 names a bad key/value.

    Settings: heartbeat_interval (a duration: 30s, 1m), max_local_concurrent, log_level,
    max_output_bytes, target_version, target_version_jitter (a duration),
    live_output_bytes_per_s (0 = none), live_output_msgs_per_s. A group or pc the backend
    does not know is refused with the closest names unless --force.

    Example: kanade config set --pc local-1 heartbeat_interval 10s
    """

    def go() -> None:
        path = _layer_path(global_, group, pc)
        options = {"name": "--group" if group else "--pc", key: key}
        with ApiClient(url, options=options) as api:
            res = api.put(path, {key: _parse_value(value)}, force=force or None)
        if json_:
            output.json_line(res)
        else:
            shown = show_setting(res["settings"].get(key), key)
            output.out.print(f"{res['layer']}: {key} = {shown}", markup=False)

    guard(go)


@app.command("unset")
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


@app.command("effective")
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
        groups = ", ".join(eff.get("groups") or []) or "-"
        output.table(
            f"effective config of {pc_id} (groups: {groups})",
            ["key", "value", "source"],
            [
                (k, show_setting(v, k), setting_source(eff["sources"].get(k, "?")))
                for k, v in sorted(eff["values"].items())
            ],
        )
        if "local" in eff["sources"].values():
            output.out.print(
                f"note: '{_SOURCES['local']}' is what {pc_id} was started with (its heartbeat "
                "says); a KV layer set above overrides it",
                markup=False,
            )
        for w in eff.get("warnings") or []:
            output.warn(w)

    guard(go)


def setting_source(name: str) -> str:
    """A setting's source for people (the API's ``local`` is the agent's own)."""
    return _SOURCES.get(name, name)
