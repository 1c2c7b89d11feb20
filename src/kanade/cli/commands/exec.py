"""Executions: ``kanade run`` (ad hoc), ``exec`` (a catalog job), ``kill``, ``executions``
(list, show, watch, tail) and ``results`` (list, output)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.adhoc import TARGET_OPTIONS, RunArgs, duration_s, run_adhoc
from kanade.cli.client import ApiClient, CliError
from kanade.cli.common import (
    AllOpt,
    ForceOpt,
    GroupOpt,
    JsonOpt,
    PcOpt,
    UrlOpt,
    guard,
    list_from_api,
)
from kanade.cli.waiting import (
    follow_exec,
    print_results,
    result_state,
    target_body,
    wait_for_exec,
)
from kanade.cli.waves import WAVE_HELP, rollout_body
from kanade.core.statuses import ExecStatus

MaxWaitOpt = Annotated[
    str | None,
    typer.Option(
        "--max-wait",
        help="Stop waiting after this long, e.g. 90s (default: the script timeout plus 30s); "
        "the pcs still awaited are then named and the exit code is 1.",
    ),
]


def run(
    script: Annotated[list[str], typer.Argument(help="The script, after `--`.")],
    all_: AllOpt = False,
    group: GroupOpt = None,
    pc: PcOpt = None,
    shell: Annotated[
        str, typer.Option("--shell", help="sh, bash, pwsh, powershell, cmd, python.")
    ] = "sh",
    timeout: Annotated[
        str, typer.Option("--timeout", help="Script timeout, e.g. 30s, 10m.")
    ] = "60s",
    starting_deadline: Annotated[
        str | None,
        typer.Option(
            "--starting-deadline",
            help="Skip (125) where the script cannot start within this, e.g. 1m; pcs that "
            "never started are then closed as no_result.",
        ),
    ] = None,
    max_wait: MaxWaitOpt = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Run an ad-hoc script and wait for every expected agent.

    Prints the scripts' output as they write it (each line prefixed by its pc when several
    run it), then each pc's exit code (as they arrive when not on a terminal); exits 0
    only if all succeeded. Never waits past its deadline (--max-wait, default: starting
    deadline + timeout + 30s): it then names the pcs still awaited and exits 1. With
    --json: one JSON line per result, no live output.

    Example: kanade run --group web -- 'df -h /'
    """
    # A well-formed `kanade run` line usually never gets here: kanade.cli.fastpath parses
    # it without importing typer. Both end in run_adhoc with the same RunArgs.
    args = RunArgs(
        script=tuple(script),
        all_=all_,
        groups=tuple(group or ()),
        pcs=tuple(pc or ()),
        shell=shell,
        timeout=timeout,
        starting_deadline=starting_deadline,
        max_wait=max_wait,
        force=force,
        json_=json_,
        url=url,
    )

    def go() -> None:
        if not run_adhoc(args):
            raise typer.Exit(1)

    guard(go)


def exec_(
    job_id: Annotated[str, typer.Argument(help="The job to run.")],
    all_: AllOpt = False,
    group: GroupOpt = None,
    pc: PcOpt = None,
    jitter: Annotated[
        str | None, typer.Option("--jitter", help="Random delay before start.")
    ] = None,
    starting_deadline: Annotated[
        str | None, typer.Option("--starting-deadline", help="Skip if not started within this.")
    ] = None,
    wave: Annotated[list[str] | None, typer.Option("--wave", help=WAVE_HELP)] = None,
    wave_delay: Annotated[
        str | None,
        typer.Option("--wave-delay", help="Delay before each wave after the first, e.g. 5m."),
    ] = None,
    halt_on_failure_rate: Annotated[
        float | None,
        typer.Option(
            "--halt-on-failure-rate",
            help="Halt when a wave's failed share exceeds this (0.2 = 20 %).",
        ),
    ] = None,
    urgent: Annotated[
        bool, typer.Option("--urgent", help="Bypass agents' local concurrency cap (admin).")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the results.")] = False,
    max_wait: MaxWaitOpt = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Run a catalog job on a target, at once or in rollout waves.

    Example: kanade exec disk-usage --all --wait

    Rollout: 10 % of the target, then 40 % of the rest, then the rest, 5 minutes after
    each wave settled; halt if more than 20 % of a wave fails (see `kanade rollout`):

      kanade exec patch --all --wave 10% --wave 40% --wave rest --wave-delay 5m
      --halt-on-failure-rate 0.2

    A wave may also be group:NAME or pcs:A,B, and carry its own delay: --wave 40%@1h.
    """

    def go() -> None:
        body: dict[str, Any] = {"target": target_body(all_, group, pc)}
        if jitter:
            body["jitter"] = jitter
        deadline_s = None
        if starting_deadline:
            deadline_s = duration_s(starting_deadline, "--starting-deadline")
            body["starting_deadline"] = starting_deadline
        wait_s = None if max_wait is None else duration_s(max_wait, "--max-wait")
        rollout = rollout_body(wave, wave_delay, halt_on_failure_rate)
        if rollout is not None:
            body["rollout"] = rollout
        if urgent:
            body["urgent"] = True
        with ApiClient(url, options=TARGET_OPTIONS) as api:
            created = api.post(f"/api/exec/{job_id}", body, force=force or None)
            if created.get("status") == "awaiting_approval":
                if json_:
                    output.json_line(created)
                else:
                    output.out.print(
                        f"exec {created['exec_id']}: job {created['job_id']} "
                        f"v{created['version']} requires approval; another operator runs "
                        f"`kanade approve {created['exec_id']}`"
                    )
                return
            if wait:
                ok = wait_for_exec(
                    api,
                    created,
                    json_mode=json_,
                    starting_deadline_s=deadline_s,
                    max_wait_s=wait_s,
                )
                if not ok:
                    raise typer.Exit(1)
                return
        if json_:
            output.json_line(created)
        elif created.get("rollout_id"):
            output.out.print(
                f"exec {created['exec_id']}: job {created['job_id']} v{created['version']} "
                f"rolling out to {created['expected_count']} agent(s) in waves; "
                f"watch with `kanade rollout show {created['rollout_id']}`"
            )
        else:
            output.out.print(
                f"exec {created['exec_id']}: job {created['job_id']} v{created['version']} "
                f"sent to {created['expected_count']} agent(s); "
                f"watch with `kanade executions show {created['exec_id']}`"
            )

    guard(go)


def kill(
    exec_id: Annotated[str, typer.Argument(help="The execution to kill.")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Kill an execution: running scripts end (exit -1), queued copies are cancelled.

    Exits 1, saying so, when the exec had already ended (nothing left to kill).

    Example: kanade kill 01J9Z8X4K2M7
    """

    def go() -> None:
        with ApiClient(url) as api:
            res = api.post(f"/api/executions/{exec_id}/kill")
        if res.get("status") != ExecStatus.CANCELLED:
            # It ended before the kill (completed, expired, rejected): nothing was killed.
            raise CliError(
                f"exec {exec_id} had already ended ({res.get('status')}); nothing to kill",
                body=res,
            )
        if json_:
            output.json_line(res)
            return
        if res.get("previous_status") == ExecStatus.CANCELLED:
            output.out.print(
                f"exec {exec_id} was already cancelled; kill sent to the fleet again",
                markup=False,
            )
            return
        output.out.print(
            f"exec {exec_id}: kill sent to the fleet; {res.get('cancelled_queued', 0)} queued "
            f"cop{'y' if res.get('cancelled_queued') == 1 else 'ies'} cancelled; "
            f"status {res.get('status')}",
            markup=False,
        )

    guard(go)


# --- results ----------------------------------------------------------------------------
# A group (so `results output ID` exists) that still lists results without a sub-command.
results_app = typer.Typer(help="Results: list recent ones (no sub-command), or show full output.")


@results_app.callback(invoke_without_command=True)
def results(
    ctx: typer.Context,
    exec_id: Annotated[str | None, typer.Option("--exec", help="Only this exec.")] = None,
    pc: Annotated[str | None, typer.Option("--pc", help="Only this pc.")] = None,
    job: Annotated[str | None, typer.Option("--job", help="Only this job.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """List recent results, newest first; `kanade results output RESULT_ID` prints one's
    full output."""
    if ctx.invoked_subcommand is not None:
        return

    def go() -> None:
        list_from_api(
            url,
            "/api/results",
            {"exec_id": exec_id, "pc_id": pc, "job_id": job, "limit": limit},
            json_=json_,
            title="results",
            columns=["result id", "finished", "pc", "job", "exit", "state", "exec"],
            row=lambda r: (
                r.get("result_id"),
                r.get("finished_at"),
                r.get("pc_id"),
                r.get("job_id"),
                r.get("exit_code"),
                result_state(r),
                r.get("exec_id"),
            ),
        )

    guard(go)


@results_app.command("output")
def results_output(
    result_id: Annotated[str, typer.Argument(help="The result id.")],
    stderr: Annotated[bool, typer.Option("--stderr", help="stderr instead of stdout.")] = False,
    url: UrlOpt = None,
) -> None:
    """Print a result's FULL stdout (or --stderr), byte for byte, however large.

    Example: kanade results output 01J9Z8X4K2M7-local-1 > out.txt
    """

    def go() -> None:
        stream = "stderr" if stderr else "stdout"
        with ApiClient(url) as api:
            data = api.get_bytes(f"/api/results/{result_id}/output/{stream}")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    guard(go)


# --- executions -------------------------------------------------------------------------
executions_app = typer.Typer(no_args_is_help=False, help="Executions: list and show.")


@executions_app.callback(invoke_without_command=True)
def executions_list(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option("--job")] = None,
    status: Annotated[ExecStatus | None, typer.Option("--status")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """List executions (newest first)."""
    if ctx.invoked_subcommand is not None:
        return

    def go() -> None:
        list_from_api(
            url,
            "/api/executions",
            {"job_id": job, "status": None if status is None else status.value,
             "limit": limit},
            json_=json_,
            title="executions",
            columns=[
                "exec_id", "job", "status", "expected", "finished", "failed", "created",
                "ends by",
            ],
            row=lambda e: (
                e["exec_id"],
                e.get("job_id"),
                e.get("status"),
                e.get("expected_count"),
                e.get("finished_count"),
                e.get("failed_count"),
                e.get("created_at"),
                ends_by(e),
            ),
        )

    guard(go)


@executions_app.command("show")
def executions_show(
    exec_id: str,
    script: Annotated[
        bool,
        typer.Option(
            "--script", help="Print the script it runs (role operator: it may hold secrets)."
        ),
    ] = False,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Show one execution with every pc's result (or, with --script, its script)."""

    def go() -> None:
        if script:
            show_script(exec_id, json_=json_, url=url)
            return
        with ApiClient(url) as api:
            ex = api.get(f"/api/executions/{exec_id}")
        if json_:
            output.json_line(ex)
            return
        ends = ends_by(ex)
        output.out.print(
            f"exec {ex['exec_id']}  job {ex.get('job_id')} v{ex.get('version')}  "
            f"status {ex.get('status')}  {ex.get('finished_count', 0)}/{ex.get('expected_count')}"
            f" finished{f'  ends by {ends}' if ends else ''}",
            markup=False,
        )
        print_results(ex.get("results", []))

    guard(go)


def show_script(exec_id: str, *, json_: bool, url: str | None) -> None:
    """The script text alone on stdout (pipe it to a file or a diff); where it came from
    on stderr."""
    with ApiClient(url) as api:
        got = api.get(f"/api/executions/{exec_id}/script")
    if json_:
        output.json_line(got)
        return
    source = got.get("object") or "inline"
    print(
        f"# exec {exec_id}: {got.get('shell') or '?'} script ({source}), "
        f"sha256 {got.get('sha256') or 'not recorded'}",
        file=sys.stderr,
    )
    if got.get("text") is None:
        raise CliError(f"the script's text cannot be shown: {got.get('note')}")
    sys.stdout.write(got["text"] if got["text"].endswith("\n") else got["text"] + "\n")
    if got.get("truncated"):
        print(f"# cut at 256 KiB of {got.get('size')} bytes", file=sys.stderr)


@executions_app.command("watch")
def executions_watch(
    exec_id: str, max_wait: MaxWaitOpt = None, json_: JsonOpt = False, url: UrlOpt = None
) -> None:
    """Follow an execution live until every expected pc has reported or was closed as
    no_result (at most --max-wait, default an hour and 30s)."""

    def go() -> None:
        wait_s = None if max_wait is None else duration_s(max_wait, "--max-wait")
        with ApiClient(url) as api:
            ex = api.get(f"/api/executions/{exec_id}")
            if not wait_for_exec(api, ex, json_mode=json_, max_wait_s=wait_s):
                raise typer.Exit(1)

    guard(go)


@executions_app.command("tail")
def executions_tail(
    exec_id: str, max_wait: MaxWaitOpt = None, json_: JsonOpt = False, url: UrlOpt = None
) -> None:
    """Follow an execution's output as its scripts write it, until it ends.

    Lines are prefixed by pc when several run it; what the agents' rate cap leaves out is
    said in place (each result keeps the whole output: `kanade results output ID`). Then
    each pc's exit code. Exit status: 0 when every pc exited 0; a single pc's own exit code
    (1-255) when it failed; 1 otherwise. --json: one JSON line per chunk, then per result.

    Example: kanade executions tail 01J9Z8X4K2M7
    """

    def go() -> None:
        wait_s = None if max_wait is None else duration_s(max_wait, "--max-wait")
        with ApiClient(url) as api:
            ex = api.get(f"/api/executions/{exec_id}")
            followed = follow_exec(api, ex, json_mode=json_, max_wait_s=wait_s, live=True)
        code = tail_exit_code(followed.rows, followed.ok)
        if code:
            raise typer.Exit(code)

    guard(go)


def tail_exit_code(rows: list[dict[str, Any]], ok: bool) -> int:
    """0 when the exec succeeded; the script's own exit code (1-255) when it ran on one pc
    and failed; 1 otherwise (several pcs, killed, skipped, no result, …)."""
    if ok:
        return 0
    if len(rows) == 1:
        code = rows[0].get("exit_code")
        if (
            rows[0].get("state") == "finished"
            and not rows[0].get("skipped")
            and isinstance(code, int)
            and 1 <= code <= 255
        ):
            return code
    return 1


_WAITING: frozenset[str] = frozenset({"awaiting_approval", "pending", "running", "expired"})


def ends_by(ex: Mapping[str, Any]) -> str:
    """When an exec still waiting for pcs ends by itself (SPEC §4.3): its deadline (plus
    the backend's grace), or why it is not known yet; empty once it has ended."""
    waiting = ex.get("status") in _WAITING or any(
        r.get("state") in ("pending", "in_flight") for r in ex.get("results") or []
    )
    if ex.get("ended_at") or ex.get("status") in ("rejected", "cancelled") or not waiting:
        return ""
    if ex.get("status") == "awaiting_approval":
        return "approval (expires)"
    return str(ex.get("deadline_at") or "not known yet (commands not all sent)")
