"""Who you are and who did what: ``kanade login``, ``logout``, ``whoami``, ``user`` (list,
add, rm; admin) and ``audit``.

How the CLI authenticates: ``--token`` / ``$KANADE_TOKEN`` win; otherwise the token
``kanade login`` stored for that backend URL (see :mod:`kanade.cli.credentials`).
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Annotated

import typer

from kanade.cli import credentials, output
from kanade.cli.client import ApiClient, CliError, resolve_url
from kanade.cli.common import JsonOpt, LimitOpt, UrlOpt, guard, page_items


def _password(name: str, from_stdin: bool) -> str:
    """One line of stdin (for scripts), else a prompt that does not echo."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return getpass.getpass(f"password for {name}: ")


# --- login / logout / whoami -----------------------------------------------------------
def login(
    username: Annotated[
        str | None, typer.Option("--username", "-u", help="Default: $USER.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Log in (auth mode jwt) and store the token for this backend URL.

    Example: kanade login --username alice
    """

    def go() -> None:
        base = resolve_url(url)
        with ApiClient(base) as api:
            mode = (api.get("/health") or {}).get("auth")
        if mode == "disabled":
            output.out.print(f"{base} runs with auth disabled (dev mode): no login needed")
            return
        if mode == "token":
            raise CliError(f"{base} uses a static token: set $KANADE_TOKEN instead of logging in")
        name = username or os.environ.get("USER") or ""
        if not name:
            raise CliError("--username is required")
        password = _password(name, password_stdin)
        # A stale stored token is harmless here: login is public, a bad token is ignored.
        with ApiClient(base) as api:
            got = api.post("/api/auth/login", {"username": name, "password": password})
        entry = {k: got.get(k) for k in ("token", "username", "role", "expires_at")}
        path = credentials.store(base, entry)
        if json_:
            output.json_line({k: v for k, v in entry.items() if k != "token"} | {"url": base})
        else:
            output.out.print(
                f"logged in to {base} as {name} ({got.get('role')}); token valid until "
                f"{got.get('expires_at')}, stored in {path}",
                markup=False,
            )

    guard(go)


def logout(
    everywhere: Annotated[
        bool, typer.Option("--everywhere", help="Log out every session of this user.")
    ] = False,
    url: UrlOpt = None,
) -> None:
    """End the stored session on the backend (the token stops working at once) and forget it.

    Example: kanade logout --everywhere
    """

    def go() -> None:
        base = resolve_url(url)
        token = credentials.stored_token(base)
        if token is not None:
            try:
                with ApiClient(base, token=token) as api:
                    api.post("/api/auth/logout", everywhere=str(everywhere).lower())
            except CliError as exc:
                # An expired or already revoked token is logged out anyway: say so.
                output.out.print(f"the backend did not end the session: {exc.message}",
                                 markup=False)
        elif everywhere:
            raise CliError(f"no stored login for {base}: log in first to log out everywhere")
        if credentials.forget(base):
            where = "every session" if everywhere else "this session"
            output.out.print(f"logged out of {base} ({where})", markup=False)
        else:
            output.out.print(f"no stored login for {base}", markup=False)

    guard(go)


def whoami(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Show who the backend thinks you are."""

    def go() -> None:
        with ApiClient(url) as api:
            me = api.get("/api/auth/me")
        if json_:
            output.json_line(me)
        else:
            output.out.print(
                f"{me.get('actor')} (role {me.get('role') or 'none'}, auth {me.get('auth')})",
                markup=False,
            )

    guard(go)


# --- audit -----------------------------------------------------------------------------
def audit(
    actor: Annotated[str | None, typer.Option("--actor")] = None,
    action: Annotated[str | None, typer.Option("--action")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO time, e.g. 2026-01-01")] = None,
    limit: LimitOpt = 50,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """The audit log, newest first.

    Example: kanade audit --actor alice --since 2026-01-01
    """

    def go() -> None:
        with ApiClient(url) as api:
            page = api.get("/api/audit", actor=actor, action=action, since=since, limit=limit)
        output.listing(
            page_items(page),
            json_=json_,
            title="audit",
            columns=["recorded", "actor", "action", "details"],
            row=lambda a: (a.get("recorded_at"), a.get("actor"), a.get("action"), a.get("details")),
        )

    guard(go)


# --- users (admin) ---------------------------------------------------------------------
user_app = typer.Typer(no_args_is_help=True, help="API users (admin; auth mode jwt).")


@user_app.command("list")
def user_list(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """List users and their roles."""

    def go() -> None:
        with ApiClient(url) as api:
            items = page_items(api.get("/api/users"))
        output.listing(items, json_=json_, title="users",
                       columns=["username", "role", "created_at", "created_by"])

    guard(go)


@user_app.command("add")
def user_add(
    name: str,
    role: Annotated[str, typer.Option("--role", help="viewer, operator or admin.")] = "viewer",
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
    url: UrlOpt = None,
) -> None:
    """Create a user."""

    def go() -> None:
        password = _password(name, password_stdin)
        with ApiClient(url) as api:
            api.post("/api/users", {"username": name, "password": password, "role": role})
        output.out.print(f"user {name} ({role}) created", markup=False)

    guard(go)


@user_app.command("rm")
def user_rm(name: str, url: UrlOpt = None) -> None:
    """Delete a user (their tokens stop working at once)."""

    def go() -> None:
        with ApiClient(url) as api:
            api.request("DELETE", f"/api/users/{name}")
        output.out.print(f"user {name} deleted", markup=False)

    guard(go)


@user_app.command("logout")
def user_logout(name: str, url: UrlOpt = None) -> None:
    """End every session of a user (their tokens stop working at once).

    Example: kanade user logout alice
    """

    def go() -> None:
        with ApiClient(url) as api:
            api.request("DELETE", f"/api/users/{name}/sessions")
        output.out.print(f"every session of {name} ended", markup=False)

    guard(go)
