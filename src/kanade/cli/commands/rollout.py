"""Rollouts and approvals: ``kanade rollout`` (list, show, resume, abort), ``approve`` and
``reject`` an exec, and ``approvals``. The ``--wave`` grammar that starts a rollout lives in
:mod:`kanade.cli.waves`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient
from kanade.cli.common import JsonOpt, UrlOpt, guard
from kanade.core.statuses import ApprovalState, RolloutStatus

app = typer.Typer(
    no_args_is_help=True,
    help="Rollouts: execs sent in waves (list, show, resume, abort).\n\n"
    "Start one with: kanade exec JOB --all --wave 10% --wave 40% --wave rest "
    "--wave-delay 5m --halt-on-failure-rate 0.2",
)


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


def settled_text(r: Mapping[str, Any]) -> str:
    """Waves settled of all, as the dashboard counts them: ``1/2``."""
    settled = sum(1 for w in r.get("waves") or [] if w.get("state") == "settled")
    return f"{settled}/{r['wave_count']}"


def _current_text(r: dict[str, Any]) -> str:
    """The wave going on (running) or next (halted), numbered as the ``#`` column and the
    dashboard number it."""
    if r["status"] == "running":
        return f"  current: wave {r['current_wave']}"
    if r["status"] == "halted":
        return f"  next: wave {r['current_wave']}"
    return ""


def _print_rollout(r: dict[str, Any]) -> None:
    threshold = r.get("halt_on_failure_rate")
    output.out.print(
        f"rollout {r['rollout_id']}  job {r['job_id']} v{r['version']}  status {r['status']}  "
        f"waves settled {settled_text(r)}{_current_text(r)}  "
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
                output.duration(w["delay_s"]) if w["delay_s"] else "0s",
                w["state"],
                w.get("due_at") or "",
                _progress_text(w),
                "" if not w.get("progress") else f"{w['progress']['failure_rate']:.0%}",
                w.get("verdict") or "",
            )
            for w in r.get("waves", [])
        ],
    )


@app.command("list")
def rollout_list(
    status: Annotated[RolloutStatus | None, typer.Option("--status")] = None,
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
            page = api.get("/api/rollouts", status=None if status is None else status.value,
                           job_id=job, limit=limit)
        output.listing(
            page.get("items", []),
            json_=json_,
            title="rollouts",
            columns=["rollout", "job", "status", "waves settled", "sent", "created", "by"],
            row=lambda r: (
                r["rollout_id"],
                f"{r['job_id']} v{r['version']}",
                r["status"],
                settled_text(r),
                f"{r['sent_pcs']}/{r['total_pcs']}",
                r["created_at"],
                r["created_by"],
            ),
        )

    guard(go)


@app.command("show")
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


@app.command("resume")
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


@app.command("abort")
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
    state: Annotated[ApprovalState, typer.Option("--state")] = ApprovalState.PENDING,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """List approval requests (default: the pending ones)."""

    def go() -> None:
        with ApiClient(url) as api:
            page = api.get("/api/approvals", state=state.value, limit=1000)
        output.listing(
            page.get("items", []),
            json_=json_,
            title="approvals",
            columns=["exec", "job", "state", "requested by", "requested", "expires",
                     "decided by", "reason"],
            row=lambda a: (
                a["exec_id"],
                f"{a['job_id']} v{a['version']}",
                a["state"],
                a["requested_by"],
                a["requested_at"],
                a["expires_at"],
                a.get("decided_by") or "",
                a.get("reason") or "",
            ),
        )

    guard(go)
