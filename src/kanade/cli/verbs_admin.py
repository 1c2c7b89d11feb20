"""Auth, audit, freeze and fleet-facts verbs: login, logout, whoami, audit, freeze,
user, inventory, checks.

Registered on the main app by :func:`register` (called at the end of ``cli/main.py``).
Same conventions as every verb: rich for people, ``--json`` for scripts, one-line
errors, non-zero exit on failure.

How the CLI authenticates: ``--token`` / ``$KANADE_TOKEN`` win; otherwise the token
``kanade login`` stored for that backend URL (see :mod:`kanade.cli.credentials`).
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Annotated, Any

import typer

from kanade.cli import credentials, output
from kanade.cli.client import ApiClient, CliError, resolve_url
from kanade.cli.common import JsonOpt, LimitOpt, UrlOpt, guard, page_items


def _emit(items: list[dict[str, Any]], json_: bool, title: str, columns: list[str]) -> None:
    if json_:
        for item in items:
            output.json_line(item)
        return
    output.table(title, columns, [[i.get(c) for c in columns] for i in items])


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
        password = (
            sys.stdin.readline().rstrip("\r\n")
            if password_stdin
            else getpass.getpass(f"password for {name}: ")
        )
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


def logout(url: UrlOpt = None) -> None:
    """Forget the stored token for this backend URL."""
    base = resolve_url(url)
    if credentials.forget(base):
        output.out.print(f"logged out of {base}", markup=False)
    else:
        output.out.print(f"no stored login for {base}", markup=False)


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
        items = page_items(page)
        if json_:
            for item in items:
                output.json_line(item)
            return
        output.table(
            "audit",
            ["recorded", "actor", "action", "details"],
            [
                (a.get("recorded_at"), a.get("actor"), a.get("action"), a.get("details"))
                for a in items
            ],
        )

    guard(go)


# --- freeze ----------------------------------------------------------------------------
freeze_app = typer.Typer(no_args_is_help=True, help="Fleet-wide freeze of scheduled fires.")


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


@freeze_app.command("set")
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


@freeze_app.command("clear")
def freeze_clear(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Lift the freeze."""

    def go() -> None:
        with ApiClient(url) as api:
            _print_freeze(api.request("DELETE", "/api/freeze"), json_)

    guard(go)


@freeze_app.command("status")
def freeze_status(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Show the freeze."""

    def go() -> None:
        with ApiClient(url) as api:
            _print_freeze(api.get("/api/freeze"), json_)

    guard(go)


# --- users (admin) ---------------------------------------------------------------------
user_app = typer.Typer(no_args_is_help=True, help="API users (admin; auth mode jwt).")


@user_app.command("list")
def user_list(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """List users and their roles."""

    def go() -> None:
        with ApiClient(url) as api:
            items = page_items(api.get("/api/users"))
        _emit(items, json_, "users", ["username", "role", "created_at", "created_by"])

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
        password = (
            sys.stdin.readline().rstrip("\r\n")
            if password_stdin
            else getpass.getpass(f"password for {name}: ")
        )
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


# --- inventory and checks --------------------------------------------------------------
def inventory(
    pc: Annotated[str | None, typer.Option("--pc")] = None,
    job: Annotated[str | None, typer.Option("--job")] = None,
    limit: LimitOpt = 100,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Latest inventory facts per pc and job."""

    def go() -> None:
        with ApiClient(url) as api:
            items = page_items(api.get("/api/inventory", pc_id=pc, job_id=job, limit=limit))
        _emit(items, json_, "inventory", ["pc_id", "job_id", "observed_at", "facts"])

    guard(go)


def checks(
    status: Annotated[str | None, typer.Option("--status", help="ok, warn, fail, unknown.")] = None,
    pc: Annotated[str | None, typer.Option("--pc")] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    limit: LimitOpt = 100,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Latest check status per pc (compliance view); exits 1 if any shown check fails."""

    def go() -> None:
        with ApiClient(url) as api:
            page = api.get("/api/checks", status=status, pc_id=pc, name=name, limit=limit)
        items = page_items(page)
        _emit(items, json_, "checks", ["name", "pc_id", "status", "detail", "observed_at"])
        if any(i.get("status") == "fail" for i in items):
            raise typer.Exit(1)

    guard(go)


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.command()(logout)
    app.command()(whoami)
    app.command()(audit)
    app.command()(inventory)
    app.command()(checks)
    app.add_typer(freeze_app, name="freeze")
    app.add_typer(user_app, name="user")
