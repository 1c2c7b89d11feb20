"""``kanade-backend user add|list|delete``: manage users in the database directly.

This is the bootstrap path (the first admin cannot log in to create itself) and
the break-glass path, so it needs no running backend and no token: whoever can
write the database file (or reach the PostgreSQL server) is already trusted.
"""

from __future__ import annotations

import getpass
import sys

import typer

from kanade.backend.api.policy import ROLES
from kanade.backend.services.auth.passwords import hash_password, password_problem
from kanade.backend.store.database import create_engine, database_url
from kanade.backend.store.migrate import upgrade_sync
from kanade.backend.store.sessions import revoke_all
from kanade.backend.store.users import (
    USERNAME_RE,
    USERNAME_RULE,
    UserExists,
    add_user,
    delete_user,
    list_users,
)
from kanade.core.instants import system_clock

users_cli = typer.Typer(no_args_is_help=True, help="Users of the API (auth mode jwt).")

DbOpt = typer.Option(
    "kanade.db",
    "--db",
    envvar="KANADE_DB",
    help="SQLite file path, or a full SQLAlchemy URL (PostgreSQL; with a password, pass it "
    "in $KANADE_DB: every local user can read a command line)",
)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise typer.BadParameter("the passwords differ")
    return first


@users_cli.command("add")
def user_add(
    name: str = typer.Argument(..., help="username"),
    role: str = typer.Option("viewer", "--role", help="viewer, operator or admin"),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="read the password from the first line of stdin"
    ),
    replace: bool = typer.Option(False, "--replace", help="reset an existing user"),
    db: str = DbOpt,
) -> None:
    """Create a user (prompts for the password twice unless --password-stdin)."""
    if not USERNAME_RE.fullmatch(name):
        raise typer.BadParameter(USERNAME_RULE, param_hint="NAME")
    if role not in ROLES:
        raise typer.BadParameter(f"must be one of {', '.join(ROLES)}", param_hint="--role")
    password = _read_password(password_stdin)
    problem = password_problem(password)
    if problem:
        raise typer.BadParameter(problem, param_hint="password")
    url = database_url(db)
    upgrade_sync(url)
    engine = create_engine(url)
    now = system_clock()
    try:
        with engine.begin() as conn:
            add_user(
                conn,
                username=name,
                password_hash=hash_password(password),
                role=role,
                now=now,
                created_by="kanade-backend user add",
                replace=replace,
            )
            # A reset password or role (a break-glass path) voids the old sessions.
            revoke_all(conn, name, now)
    except UserExists:
        typer.echo(f"user {name!r} exists; pass --replace to reset it", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    typer.echo(f"user {name} ({role}) stored")


@users_cli.command("list")
def user_list(db: str = DbOpt) -> None:
    """List users and roles."""
    url = database_url(db)
    upgrade_sync(url)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for u in list_users(conn):
                typer.echo(f"{u['username']}\t{u['role']}\t{u['created_at']:%Y-%m-%d %H:%M}")
    finally:
        engine.dispose()


@users_cli.command("delete")
def user_delete(name: str = typer.Argument(..., help="username"), db: str = DbOpt) -> None:
    """Delete a user (their tokens stop working at once)."""
    url = database_url(db)
    upgrade_sync(url)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            gone = delete_user(conn, name)
            if gone:  # a user of the same name created later must not inherit tokens
                revoke_all(conn, name, system_clock())
    finally:
        engine.dispose()
    if not gone:
        typer.echo(f"no user {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"user {name} deleted")
