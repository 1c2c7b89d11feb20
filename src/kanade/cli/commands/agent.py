"""``kanade agent``: enrolment tokens, enrolled agents and revoking an agent's broker
identity (SPEC §8.1). Admin-only on the backend."""

from __future__ import annotations

import shlex
from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient
from kanade.cli.common import GroupOpt, JsonOpt, UrlOpt, guard, list_from_api

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Agent enrolment and revocation.\n\n"
        "Examples:\n\n"
        "  kanade agent enroll-token --group web --expires 2h\n\n"
        "  kanade agent tokens\n\n"
        "  kanade agent enrolled\n\n"
        "  kanade agent revoke web-3"
    ),
)


@app.command("enroll-token")
def enroll_token(
    group: GroupOpt = None,
    expires: Annotated[
        str, typer.Option("--expires", help="How long it stays usable (max 7d).")
    ] = "1h",
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Make a single-use enrolment token (shown once) and the command to run on the machine.

    Example: kanade agent enroll-token --group web --expires 2h
    """

    def go() -> None:
        with ApiClient(url) as api:
            made: dict[str, Any] = api.post(
                "/api/agents/enroll-tokens", {"groups": group or [], "expires": expires}
            )
            backend = api.url
        command = f"kanade-agent enroll {shlex.quote(backend)} {shlex.quote(made['token'])}"
        if json_:
            output.json_line({**made, "command": command})
            return
        groups = ", ".join(made.get("groups") or []) or "(none)"
        output.out.print(
            f"token {made['token_id']} (groups: {groups}; expires {made['expires_at']}); "
            "it is shown only now:",
            markup=False,
        )
        output.out.print(made["token"], markup=False)
        output.out.print("On the machine to enrol, run:", markup=False)
        output.out.print(f"  {command}", markup=False)

    guard(go)


@app.command("tokens")
def tokens(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Enrolment tokens still usable (never their secret).

    Example: kanade agent tokens
    """
    guard(
        lambda: list_from_api(
            url,
            "/api/agents/enroll-tokens",
            {},
            json_=json_,
            title="open enrolment tokens",
            columns=["token_id", "groups", "created by", "expires at"],
            row=lambda t: (
                t["token_id"],
                ",".join(t.get("groups") or []),
                t.get("created_by"),
                t.get("expires_at"),
            ),
        )
    )


@app.command("cancel-token")
def cancel_token(
    token_id: Annotated[str, typer.Argument(help="The token's id (kanade agent tokens).")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Cancel an enrolment token before it is used.

    Example: kanade agent cancel-token 3f2a9c0d1e2b4a5c
    """

    def go() -> None:
        with ApiClient(url) as api:
            res = api.delete(f"/api/agents/enroll-tokens/{token_id}")
        if json_:
            output.json_line(res)
        else:
            state = "cancelled" if res.get("was_open") else "was no longer usable"
            output.out.print(f"token {token_id}: {state}", markup=False)

    guard(go)


@app.command("enrolled")
def enrolled(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Enrolled agents: active or revoked.

    Example: kanade agent enrolled
    """
    guard(
        lambda: list_from_api(
            url,
            "/api/agents/enrolled",
            {},
            json_=json_,
            title="enrolled agents",
            columns=["pc_id", "status", "enrolled at", "revoked at", "revoked by"],
            row=lambda a: (
                a["pc_id"],
                a.get("status"),
                a.get("enrolled_at"),
                a.get("revoked_at"),
                a.get("revoked_by"),
            ),
        )
    )


@app.command("revoke")
def revoke(
    pc_id: Annotated[str, typer.Argument(help="The pc whose broker identity is revoked.")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Cut an agent off the broker within seconds; its reconnects are refused until it
    enrols again with a new token.

    Example: kanade agent revoke web-3
    """

    def go() -> None:
        with ApiClient(url) as api:
            res = api.post(f"/api/agents/{pc_id}/revoke")
        if json_:
            output.json_line(res)
        else:
            note = " (it was already revoked)" if res.get("was_revoked") else ""
            output.out.print(f"{pc_id}: revoked{note}", markup=False)

    guard(go)
