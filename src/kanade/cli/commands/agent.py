"""``kanade agent``: enrolment tokens, enrolled agents and revoking an agent's broker
identity (SPEC §8.1). Admin-only on the backend."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient, CliError
from kanade.cli.common import AllOpt, GroupOpt, JsonOpt, PcOpt, UrlOpt, guard, list_from_api

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Agent enrolment and revocation.\n\n"
        "Examples:\n\n"
        "  kanade agent enroll-token --group web --expires 2h\n\n"
        "  kanade agent tokens\n\n"
        "  kanade agent enrolled\n\n"
        "  kanade agent revoke web-3\n\n"
        "  kanade agent build -o dist/kanade-agent.pyz\n\n"
        "  kanade agent publish dist/kanade-agent.pyz\n\n"
        "  kanade agent rollout 0.2.0 --group canary --jitter 1h\n\n"
        "  kanade agent current"
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


@app.command("build")
def build(
    output_file: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the artefact.")
    ] = Path("dist/kanade-agent.pyz"),
    wheels: Annotated[
        Path | None,
        typer.Option(
            "--wheels",
            help="Build from every wheel in DIR (e.g. `pip download kanade --only-binary "
            ":all: --platform win_amd64 --python-version 3.11 -d DIR`) instead of this "
            "interpreter's installed packages.",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Build the single-file agent: one zipapp a machine with only Python 3.11+ runs.

    It holds the agent's part of kanade and its dependencies (no backend, CLI or test
    packages) for one platform: this interpreter's OS, machine and CPython minor, or the
    wheels' with --wheels. Run it there with `python3 kanade-agent.pyz run` or install it
    as a service with `python3 kanade-agent.pyz install`.

    Example: kanade agent build -o dist/kanade-agent.pyz
    """
    from kanade.cli.zipapp import BuildError
    from kanade.cli.zipapp import build as build_artefact

    try:
        built = build_artefact(output_file, wheels=wheels)
    except BuildError as exc:
        output.fail(str(exc))
        raise typer.Exit(1) from None
    summary = {
        "path": str(built.path),
        "version": built.version,
        "platform": built.platform,
        "sha256": built.sha256,
        "size_bytes": built.size,
        "files": built.files,
        "seconds": round(built.seconds, 2),
    }
    if json_:
        output.json_line(summary)
        return
    output.out.print(
        f"built {built.path}: kanade-agent {built.version} for {built.platform}, "
        f"{built.size / 1e6:.1f} MB, sha256 {built.sha256} ({built.seconds:.1f}s)",
        markup=False,
    )
    output.out.print(f"on the machine: python3 {built.path.name} run --help", markup=False)


@app.command("publish")
def publish(
    artefact: Annotated[Path, typer.Argument(help="A single-file agent (kanade agent build).")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Store a single-file agent as a signed release: its version and platform come from
    inside it; agents verify the backend's signature and the sha256 before running it.

    Example: kanade agent publish dist/kanade-agent.pyz
    """

    def go() -> None:
        try:
            data = artefact.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {artefact}: {exc.strerror or exc}") from None
        with ApiClient(url) as api:
            res = api.request("POST", "/api/agent-releases", content=data, timeout=300.0,
                              headers={"content-type": "application/octet-stream"})
        if json_:
            output.json_line(res)
            return
        state = "published" if res.get("created") else "already published (same bytes)"
        output.out.print(
            f"release {res['name']} {state}: sha256 {res['sha256']}, {res['size']} bytes",
            markup=False,
        )
        output.out.print(
            f"roll it out with: kanade agent rollout {res['version']} --group G | --all",
            markup=False,
        )

    guard(go)


@app.command("rollout")
def rollout(
    version: Annotated[str, typer.Argument(help="The release to run (kanade agent publish).")],
    all_: AllOpt = False,
    group: GroupOpt = None,
    pc: PcOpt = None,
    jitter: Annotated[
        str | None,
        typer.Option("--jitter", help="Spread the updates over 0..this (e.g. 1h)."),
    ] = None,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Set target_version (and target_version_jitter) in the config layers: --all (global),
    each --group G or each --pc P. Agents wait a random 0..jitter, download, verify, check
    and switch; a version that fails N times is quarantined (kanade agent current).

    Example: kanade agent rollout 0.2.0 --group canary --jitter 1h
    """

    def go() -> None:
        from kanade.core.durations import parse_duration
        from kanade.core.releases import VERSION_RULE, is_version

        if not is_version(version):
            raise CliError(f"version {version!r} {VERSION_RULE}")
        layers = (["/api/config/global"] if all_ else []) + [
            f"/api/config/group/{g}" for g in group or []
        ] + [f"/api/config/pc/{p}" for p in pc or []]
        if not layers:
            raise CliError("say where: --all, --group G or --pc P (repeatable)")
        settings: dict[str, Any] = {"target_version": version}
        if jitter is not None:
            try:
                settings["target_version_jitter"] = parse_duration(jitter).total_seconds()
            except ValueError as exc:
                raise CliError(f"--jitter: {exc}") from None
        with ApiClient(url) as api:
            known = {r["version"] for r in api.get("/api/agent-releases")["items"]}
            if version not in known:
                raise CliError(
                    f"no release {version} is published (known: "
                    f"{', '.join(sorted(known)) or 'none'}); kanade agent publish FILE first"
                )
            done = [api.put(path, settings) for path in layers]
        if json_:
            for res in done:
                output.json_line(res)
            return
        for res in done:
            output.out.print(f"{res['layer']}: target_version {version}", markup=False)
        output.out.print("watch it with: kanade agent current", markup=False)

    guard(go)


@app.command("current")
def current(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Agent versions across the fleet with counts, the rollout targets, quarantined agents.

    Example: kanade agent current
    """

    def go() -> None:
        with ApiClient(url) as api:
            fleet = api.get("/api/agent-versions")
        if json_:
            output.json_line(fleet)
            return
        output.table(
            f"agent versions ({fleet['total']} agents)", ["version", "agents"],
            [(v["version"] or "?", v["count"]) for v in fleet["versions"]],
        )
        targets = fleet.get("targets") or {}
        output.out.print(
            "targets: " + (", ".join(f"{k} → {v}" for k, v in targets.items()) or "none set"),
            markup=False,
        )
        states = fleet.get("update_states") or {}
        if states:
            output.out.print(
                "updating: " + ", ".join(f"{k} {n}" for k, n in states.items()), markup=False
            )
        for q in fleet.get("quarantined") or []:
            output.out.print(
                f"quarantined on {q['pc_id']} (running {q.get('running')}): "
                f"{', '.join(q['versions'])}" + (f" — {q['error']}" if q.get("error") else ""),
                markup=False,
            )

    guard(go)
