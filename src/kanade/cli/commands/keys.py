"""``kanade keys``: the backend's command-signing keys (SPEC §8.2) — create them locally
(``init``, what ``kanade up`` runs), show or rotate them through the API (admin)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient, CliError
from kanade.cli.common import JsonOpt, UrlOpt, guard
from kanade.security.signing_keys import (
    ENV_VAR,
    KEYS_FILE,
    SigningKeysError,
    ensure_key_dir,
    write_keyring_file,
)

app = typer.Typer(no_args_is_help=True, help="Command-signing keys (init, show, rotate).")


def _print_keys(view: dict[str, Any], json_: bool) -> None:
    if json_:
        output.json_line(view)
        return
    for key in view.get("keys", []):
        state = (
            "active"
            if key["kid"] == view.get("active")
            else (f"retires {key['retire_at']}" if key.get("retire_at") else "kept")
        )
        output.out.print(f"{key['kid']}  created {key['created_at']}  {state}", markup=False)


@app.command("init")
def keys_init(
    directory: Annotated[
        Path | None,
        typer.Argument(help=f"key directory (default: ${ENV_VAR}, else .kanade/keys)"),
    ] = None,
    keyring: Annotated[
        Path | None,
        typer.Option("--keyring", help="also write the agents' keyring.json (public keys) here"),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Create the signing key if the directory has none (idempotent; 0600 files, 0700 dir).

    Example: kanade keys init /var/lib/kanade/keys --keyring ./keyring.json
    """

    def go() -> None:
        path = directory or Path(os.environ.get(ENV_VAR) or ".kanade/keys")
        try:
            keys, created = ensure_key_dir(path)
            if keyring is not None:
                write_keyring_file(keyring, keys.keyring())
        except (SigningKeysError, OSError) as exc:
            raise CliError(str(exc)) from None
        view = {
            "directory": str(path),
            "file": str(path / KEYS_FILE),
            "active": keys.active,
            "created": created,
        }
        if json_:
            output.json_line(view)
        else:
            verb = "created" if created else "already had"
            output.out.print(f"{path}: {verb} signing key {keys.active}", markup=False)

    guard(go)


@app.command("show")
def keys_show(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """The backend's active key and the older keys agents still trust (admin)."""

    def go() -> None:
        with ApiClient(url) as api:
            _print_keys(api.get("/api/keys"), json_)

    guard(go)


@app.command("rotate")
def keys_rotate(
    overlap: Annotated[
        str, typer.Option("--overlap", help="how long agents keep trusting the old key")
    ] = "24h",
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Switch to a new signing key; agents learn it through a message signed by the old one.

    Example: kanade keys rotate --overlap 2h
    """

    def go() -> None:
        with ApiClient(url) as api:
            view = api.request("POST", "/api/keys/rotate", json={"overlap": overlap})
        if json_:
            output.json_line(view)
            return
        output.out.print(
            f"rotated: {view['previous']} -> {view['active']} "
            f"({view['resigned']} documents re-signed)",
            markup=False,
        )
        _print_keys(view, False)

    guard(go)
