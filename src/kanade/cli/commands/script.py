"""``kanade script``: script objects — scripts a job runs with ``execute.script_object``
(SPEC §2.1), uploaded once instead of travelling inside every command. A script bigger
than a command may be (1 MiB) has to go this way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient, CliError
from kanade.cli.common import JsonOpt, UrlOpt, guard

app = typer.Typer(no_args_is_help=True, help="Script objects (execute.script_object).")

UPLOAD_TIMEOUT_S = 120.0


def _split(ref: str) -> tuple[str, str]:
    name, sep, version = ref.partition("/")
    if not sep or not name or not version:
        raise CliError(f"{ref!r} is not NAME/VERSION (e.g. disk-report/3)")
    return name, version


def _print(view: dict[str, Any], json_: bool, verb: str) -> None:
    if json_:
        output.json_line(view)
        return
    output.out.print(
        f"{verb} {view['script_object']}: {view['size']} bytes, sha256 {view['sha256']}\n"
        f"run it from a job with  execute: {{script_object: {view['script_object']}}}",
        markup=False,
    )


@app.command("upload")
def upload(
    file: Annotated[Path, typer.Argument(help="the script file", exists=True, dir_okay=False)],
    ref: Annotated[str, typer.Argument(metavar="NAME/VERSION", help="e.g. disk-report/3")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Upload a script object. A version is immutable: change the script, bump the version.

    Example: kanade script upload scripts/report.py disk-report/3
    """

    def go() -> None:
        name, version = _split(ref)
        data = file.read_bytes()
        with ApiClient(url, timeout=UPLOAD_TIMEOUT_S) as api:
            view = api.request(
                "PUT",
                f"/api/scripts/{name}/{version}",
                content=data,
                headers={"content-type": "application/octet-stream"},
            )
        _print(view, json_, "uploaded")

    guard(go)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(metavar="NAME/VERSION")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """A stored script object's size and sha256."""

    def go() -> None:
        name, version = _split(ref)
        with ApiClient(url) as api:
            _print(api.get(f"/api/scripts/{name}/{version}"), json_, "stored")

    guard(go)
