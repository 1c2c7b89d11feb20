"""Rollouts and approvals: ``kanade rollout list|show|resume|abort``, ``kanade approve|reject
EXEC_ID``, ``kanade approvals``, ``kanade job approve-unattended JOB VERSION``, and the
``--wave`` grammar of ``kanade exec`` (:func:`rollout_body`).

Registered on the main app by :func:`register` (called at the end of ``cli/main.py``),
with the conventions of every verb: rich for people, ``--json`` (one object per line) for
scripts, one-line errors, non-zero exit on failure.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient, CliError
from kanade.cli.common import JsonOpt, UrlOpt, guard
from kanade.core.durations import parse_duration

WAVE_HELP = (
    "A rollout wave (repeatable, in order): 10% (of the pcs still remaining), rest, "
    "group:NAME or pcs:A,B. Append @DELAY for this wave's own delay (40%@10m)."
)
WAVE_GRAMMAR = "use 10%, rest, group:NAME or pcs:A,B, optionally followed by @DELAY"

rollout_app = typer.Typer(
    no_args_is_help=True,
    help="Rollouts: execs sent in waves (list, show, resume, abort).\n\n"
    "Start one with: kanade exec JOB --all --wave 10% --wave 40% --wave rest "
    "--wave-delay 5m --halt-on-failure-rate 0.2",
)






# --- the --wave grammar ----------------------------------------------------------------------


def _delay_text(text: str, what: str) -> str:
    try:
        parse_duration(text)
    except ValueError as exc:
        raise CliError(f"{what}: {exc}") from None
    return text


def parse_wave(text: str, default_delay: str) -> dict[str, Any]:
    """``10%``, ``rest``, ``group:web``, ``pcs:a,b``, each optionally ``@DELAY``."""
    spec, _, delay = text.strip().partition("@")
    spec = spec.strip()
    wave: dict[str, Any]
    if spec.lower() == "rest":
        wave = {"percent": 100}
    elif spec.endswith("%"):
        try:
            value = float(spec[:-1])
        except ValueError:
            raise CliError(
                f"--wave {text!r}: {spec[:-1]!r} is not a number; {WAVE_GRAMMAR}"
            ) from None
        if not 0 < value <= 100:
            raise CliError(f"--wave {text!r}: a percentage must be in (0, 100]")
        wave = {"percent": int(value) if value.is_integer() else value}
    elif spec.startswith("group:") and spec[6:]:
        wave = {"group": spec[6:]}
    elif spec.startswith("pcs:") and spec[4:]:
        wave = {"pcs": [p.strip() for p in spec[4:].split(",") if p.strip()]}
    else:
        raise CliError(f"--wave {text!r}: {WAVE_GRAMMAR}")
    wave["delay"] = _delay_text(delay.strip(), f"--wave {text!r}") if delay else default_delay
    return wave


def rollout_body(
    waves: list[str] | None, wave_delay: str | None, halt_on_failure_rate: float | None
) -> dict[str, Any] | None:
    """The ``rollout`` of an exec body, or None without ``--wave``. ``--wave-delay`` is
    the delay before every wave but the first (which starts at once)."""
    if not waves:
        if wave_delay is not None or halt_on_failure_rate is not None:
            raise CliError("--wave-delay and --halt-on-failure-rate need at least one --wave")
        return None
    delay = _delay_text(wave_delay, "--wave-delay") if wave_delay else "0s"
    parsed = [parse_wave(w, "0s" if i == 0 else delay) for i, w in enumerate(waves)]
    body: dict[str, Any] = {"waves": parsed}
    if halt_on_failure_rate is not None:
        if not 0 <= halt_on_failure_rate <= 1:
            raise CliError("--halt-on-failure-rate must be between 0 and 1 (0.2 = 20 %)")
        body["halt_on_failure_rate"] = halt_on_failure_rate
    return body


# --- rollout verbs ---------------------------------------------------------------------------


def _progress_text(w: dict[str, Any]) -> str:
    p = w.get("progress")
    if not p:
        return "-"
    text = f"{p['finished']}/{p['size']} ok {p['succeeded']} fail {p['failed']}"
    if p.get("skipped"):
        text += f" skip {p['skipped']}"
    if p.get("missing"):
        text += f" missing {p['missing']}"
    return text


def _print_rollout(r: dict[str, Any]) -> None:
    threshold = r.get("halt_on_failure_rate")
    output.out.print(
        f"rollout {r['rollout_id']}  job {r['job_id']} v{r['version']}  status {r['status']}  "
        f"wave {min(r['current_wave'] + 1, r['wave_count'])}/{r['wave_count']}  "
        f"sent {r['sent_pcs']}/{r['total_pcs']} pc(s)  "
        f"halt above {'-' if threshold is None else f'{threshold:g}'}",
        markup=False,
    )
    if r.get("reason"):
        output.out.print(f"reason: {r['reason']}", markup=False)
    output.table(
        None,
        ["#", "wave", "pcs", "delay", "state", "due", "progress", "fail rate", "verdict"],
        [
            (
                w["index"],
                w["label"],
                w["size"],
                f"{w['delay_s']:g}s",
                w["state"],
                w.get("due_at") or "",
                _progress_text(w),
                "" if not w.get("progress") else f"{w['progress']['failure_rate']:.0%}",
                w.get("verdict") or "",
            )
            for w in r.get("waves", [])
        ],
    )


@rollout_app.command("list")
def rollout_list(
    status: Annotated[
        str | None,
        typer.Option("--status", help="running, halted, completed, aborted, awaiting_approval…"),
    ] = None,
    job: Annotated[str | None, typer.Option("--job", help="Only this job.")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """List rollouts, newest first.

    Example: kanade rollout list --status halted
    """

    def go() -> None:
        with ApiClient(url) as api:
            page = api.get("/api/rollouts", status=status, job_id=job, limit=limit)
        items = page.get("items", [])
        if json_:
            for r in items:
                output.json_line(r)
            return
        output.table(
            "rollouts",
            ["rollout", "job", "status", "wave", "sent", "created", "by"],
            [
                (
                    r["rollout_id"],
                    f"{r['job_id']} v{r['version']}",
                    r["status"],
                    f"{min(r['current_wave'] + 1, r['wave_count'])}/{r['wave_count']}",
                    f"{r['sent_pcs']}/{r['total_pcs']}",
                    r["created_at"],
                    r["created_by"],
                )
                for r in items
            ],
        )

    guard(go)


@rollout_app.command("show")
def rollout_show(
    rollout_id: Annotated[str, typer.Argument(help="The rollout (= exec) id.")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Show one rollout with every wave's pcs, state and progress."""

    def go() -> None:
        with ApiClient(url) as api:
            r = api.get(f"/api/rollouts/{rollout_id}")
        if json_:
            output.json_line(r)
        else:
            _print_rollout(r)

    guard(go)


@rollout_app.command("resume")
def rollout_resume(
    rollout_id: Annotated[str, typer.Argument(help="The halted rollout.")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Continue a halted rollout: its next wave is sent at once."""

    def go() -> None:
        with ApiClient(url) as api:
            out = api.post(f"/api/rollouts/{rollout_id}/resume")
        if json_:
            output.json_line(out)
        else:
            output.out.print(f"rollout {rollout_id} resumed; wave {out['next_wave']} goes next")

    guard(go)


@rollout_app.command("abort")
def rollout_abort(
    rollout_id: Annotated[str, typer.Argument(help="The running or halted rollout.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Recorded in the audit.")] = None,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """End a rollout: waves not yet sent are never sent; the exec becomes cancelled.
    Commands already sent keep running (stop them with `kanade kill EXEC_ID`)."""

    def go() -> None:
        with ApiClient(url) as api:
            out = api.post(f"/api/rollouts/{rollout_id}/abort", {"reason": reason})
        if json_:
            output.json_line(out)
        else:
            n = len(out.get("cancelled_waves") or [])
            output.out.print(f"rollout {rollout_id} aborted; {n} wave(s) will never be sent")

    guard(go)


# --- approvals -------------------------------------------------------------------------------


def approve(
    exec_id: Annotated[str, typer.Argument(help="The exec waiting for approval.")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Approve an exec of a require_approval job (you must not be its requester); it is
    sent at once.

    Example: kanade approve 3f2a…
    """

    def go() -> None:
        with ApiClient(url) as api:
            out = api.post(f"/api/executions/{exec_id}/approve")
        if json_:
            output.json_line(out)
        else:
            what = "its rollout starts" if out.get("rollout") else "sent"
            output.out.print(f"exec {exec_id} approved; {what}")

    guard(go)


def reject(
    exec_id: Annotated[str, typer.Argument(help="The exec waiting for approval.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded).")] = None,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Reject an exec waiting for approval; it is never sent."""

    def go() -> None:
        with ApiClient(url) as api:
            out = api.post(f"/api/executions/{exec_id}/reject", {"reason": reason})
        if json_:
            output.json_line(out)
        else:
            output.out.print(f"exec {exec_id} rejected")

    guard(go)


def approvals_list(
    state: Annotated[
        str | None, typer.Option("--state", help="pending, approved or rejected.")
    ] = "pending",
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """List approval requests (default: the pending ones)."""

    def go() -> None:
        with ApiClient(url) as api:
            page = api.get("/api/approvals", state=state, limit=1000)
        items = page.get("items", [])
        if json_:
            for a in items:
                output.json_line(a)
            return
        output.table(
            "approvals",
            [
                "exec",
                "job",
                "state",
                "requested by",
                "requested",
                "expires",
                "decided by",
                "reason",
            ],
            [
                (
                    a["exec_id"],
                    f"{a['job_id']} v{a['version']}",
                    a["state"],
                    a["requested_by"],
                    a["requested_at"],
                    a["expires_at"],
                    a.get("decided_by") or "",
                    a.get("reason") or "",
                )
                for a in items
            ],
        )

    guard(go)


def job_approve_unattended(
    job_id: Annotated[str, typer.Argument(help="The job.")],
    version: Annotated[str, typer.Argument(help="Its version (the catalog's current one).")],
    revoke: Annotated[bool, typer.Option("--revoke", help="Withdraw the approval.")] = False,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Let schedules fire this version of a require_approval job unattended.

    Example: kanade job approve-unattended patch-reboot 3
    """

    def go() -> None:
        path = f"/api/jobs/{job_id}/versions/{version}/approve-unattended"
        with ApiClient(url) as api:
            out = api.delete(path) if revoke else api.post(path)
        if json_:
            output.json_line(out)
        elif revoke:
            output.out.print(f"job {job_id} version {version}: unattended runs withdrawn")
        else:
            output.out.print(f"job {job_id} version {version}: approved for unattended runs")

    guard(go)


def register(app: typer.Typer) -> None:
    app.add_typer(rollout_app, name="rollout")
    app.command("approve")(approve)
    app.command("reject")(reject)
    app.command("approvals")(approvals_list)
    for info in app.registered_groups:
        if info.name == "job" and info.typer_instance is not None:
            info.typer_instance.command("approve-unattended")(job_approve_unattended)
