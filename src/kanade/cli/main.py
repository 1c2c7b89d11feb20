"""``kanade``: the operator CLI.

Conventions for every verb: rich tables for people, ``--json`` (one object per
line) for scripts, a live progress display for anything that waits, a non-zero
exit on failure, and errors in one line that say what to do.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kanade.cli import output, verbs_rollout
from kanade.cli.client import ApiClient, CliError
from kanade.cli.common import AllOpt, GroupOpt, JsonOpt, PcOpt, UrlOpt, guard
from kanade.cli.documents import read_job_file
from kanade.cli.waiting import print_results, target_body, wait_for_exec
from kanade.core.durations import parse_duration

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    rich_markup_mode=None,
    help=(
        "kanade: run scripts on fleets of machines and know what happened on each.\n\n"
        "Examples:\n\n"
        "  kanade up --agents 3\n\n"
        "  kanade run --all -- 'uname -a'\n\n"
        "  kanade job create examples/jobs/disk-usage.yaml\n\n"
        "  kanade exec disk-usage --group web --wait"
    ),
)
job_app = typer.Typer(no_args_is_help=True, help="Job manifests: validate, create, list, show.")
app.add_typer(job_app, name="job")





@app.command()
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
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Run an ad-hoc script and wait for every expected agent.

    Prints each pc's exit code and output; exits 0 only if all succeeded.

    Example: kanade run --group web -- 'df -h /'
    """

    def go() -> None:
        try:
            parse_duration(timeout)
        except ValueError as exc:
            raise CliError(f"--timeout: {exc}") from exc
        body = {
            "script": " ".join(script),
            "shell": shell,
            "timeout": timeout,
            "target": target_body(all_, group, pc),
        }
        with ApiClient(url) as api:
            created = api.post("/api/run", body)
            ok = wait_for_exec(
                api, created, json_mode=json_, timeout_s=parse_duration(timeout).total_seconds()
            )
        if not ok:
            raise typer.Exit(1)

    guard(go)


@app.command("exec")
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
    wave: Annotated[list[str] | None, typer.Option("--wave", help=verbs_rollout.WAVE_HELP)] = None,
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
        if starting_deadline:
            body["starting_deadline"] = starting_deadline
        rollout = verbs_rollout.rollout_body(wave, wave_delay, halt_on_failure_rate)
        if rollout is not None:
            body["rollout"] = rollout
        if urgent:
            body["urgent"] = True
        with ApiClient(url) as api:
            created = api.post(f"/api/exec/{job_id}", body)
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
                if not wait_for_exec(api, created, json_mode=json_):
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


# --- jobs -------------------------------------------------------------------------------
@job_app.command("validate")
def job_validate(
    file: Annotated[Path, typer.Argument(help="Job manifest (YAML or JSON).")],
    json_: JsonOpt = False,
) -> None:
    """Check a job manifest; exit 1 naming every field path and reason.

    Example: kanade job validate examples/jobs/disk-usage.yaml
    """

    def go() -> None:
        job = read_job_file(file)
        if json_:
            output.json_line({"ok": True, "id": job.id, "version": job.version})
        else:
            output.out.print(f"{file}: ok (job {job.id} version {job.version})")

    guard(go)


@job_app.command("create")
def job_create(
    file: Annotated[Path, typer.Argument(help="Job manifest (YAML or JSON).")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Upload a job manifest (script_file is inlined first).

    Example: kanade job create examples/jobs/disk-usage.yaml
    """

    def go() -> None:
        job = read_job_file(file)
        with ApiClient(url) as api:
            stored = api.post("/api/jobs", job.model_dump(mode="json", exclude_none=True))
        if json_:
            output.json_line(stored)
        else:
            output.out.print(f"job {job.id} version {job.version} stored")

    guard(go)


@job_app.command("list")
def job_list(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """List the job catalog."""

    def go() -> None:
        with ApiClient(url) as api:
            jobs = api.get("/api/jobs")
        items = jobs.get("items", jobs) if isinstance(jobs, dict) else jobs
        if json_:
            for j in items:
                output.json_line(j)
            return
        output.table(
            "jobs",
            ["id", "version", "shell", "timeout", "description"],
            [
                (
                    j.get("id"),
                    j.get("version"),
                    j.get("execute", {}).get("shell"),
                    j.get("execute", {}).get("timeout"),
                    j.get("description") or "",
                )
                for j in items
            ],
        )

    guard(go)


@job_app.command("show")
def job_show(job_id: str, json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Show one job manifest."""

    def go() -> None:
        with ApiClient(url) as api:
            job = api.get(f"/api/jobs/{job_id}")
        if json_:
            output.json_line(job)
        else:
            import yaml

            output.out.print(yaml.safe_dump(job, sort_keys=False).rstrip(), markup=False)

    guard(go)


# --- fleet views --------------------------------------------------------------------------
agents_app = typer.Typer(no_args_is_help=False, help="Agents: list (default) and show.")
app.add_typer(agents_app, name="agents")


def _agent_rows(
    api: ApiClient, status: str | None, group: str | None, os_family: str | None,
    version: str | None,
) -> list[dict[str, Any]]:
    page = api.get("/api/agents", status=status, group=group, os_family=os_family,
                   version=version, limit=100_000)
    try:  # schedule-set drift (desired vs applied); an older backend lacks it
        drift = {d["pc_id"]: d for d in api.get("/api/agents/drift").get("items", [])}
    except CliError:
        drift = {}
    items: list[dict[str, Any]] = page.get("items", []) if isinstance(page, dict) else page
    for a in items:
        d = drift.get(a["pc_id"])
        if d is not None:
            a["drift"] = d["drift"]
            a["expected_schedule_set_version"] = d["expected_version"]
    return items


@agents_app.callback(invoke_without_command=True)
def agents(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="alive, stale or offline.")] = None,
    group: Annotated[str | None, typer.Option("--group", "-g", help="Members of a group.")] = None,
    os_family: Annotated[str | None, typer.Option("--os", help="linux, windows, darwin.")] = None,
    version: Annotated[str | None, typer.Option("--version", help="Agent version.")] = None,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """List agents with their status (alive = heartbeat within 2 min) and schedule drift.

    Example: kanade agents --status offline --group web
    """
    if ctx.invoked_subcommand is None:
        _print_agents(status, group, os_family, version, json_, url)


def _print_agents(
    status: str | None, group: str | None, os_family: str | None, version: str | None,
    json_: bool, url: str | None,
) -> None:
    def go() -> None:
        with ApiClient(url) as api:
            items = _agent_rows(api, status, group, os_family, version)
        if json_:
            for a in items:
                output.json_line(a)
            return
        output.table(
            "agents",
            ["pc_id", "status", "version", "os", "groups", "queue", "schedules", "last seen"],
            [
                (
                    a["pc_id"],
                    a.get("status"),
                    a.get("agent_version"),
                    f"{a.get('os_family', '')} {a.get('os_version', '')}".strip(),
                    ",".join(a.get("groups") or []),
                    a.get("queue_length", 0),
                    "?" if "drift" not in a else ("DRIFT" if a["drift"] else "in sync"),
                    a.get("last_seen"),
                )
                for a in items
            ],
        )

    guard(go)


@agents_app.command("list")
def agents_list(
    status: Annotated[str | None, typer.Option("--status")] = None,
    group: Annotated[str | None, typer.Option("--group", "-g")] = None,
    os_family: Annotated[str | None, typer.Option("--os")] = None,
    version: Annotated[str | None, typer.Option("--version")] = None,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """The same as `kanade agents`."""
    _print_agents(status, group, os_family, version, json_, url)


@agents_app.command("show")
def agents_show(pc_id: str, json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """One agent: last heartbeat, groups, effective config, drift and recent results.

    Example: kanade agents show local-1
    """

    def go() -> None:
        with ApiClient(url) as api:
            agent = api.get(f"/api/agents/{pc_id}")
            extra: dict[str, Any] = {}
            for key, path in (("config", f"/api/agents/{pc_id}/config"),
                              ("drift", f"/api/agents/{pc_id}/drift")):
                try:
                    extra[key] = api.get(path)
                except CliError:
                    extra[key] = None  # an older backend, or auth that hides it
            recent = api.get("/api/results", pc_id=pc_id, limit=10)
        detail = {**agent, **extra, "recent_results": recent.get("items", [])}
        if json_:
            output.json_line(detail)
            return
        fields = ["status", "agent_version", "hostname", "os_family", "os_version",
                  "boot_time", "cpu_percent", "rss_bytes", "groups", "queue_length", "running",
                  "schedule_set_version", "last_command_at", "last_seen", "first_seen"]
        output.table(f"agent {pc_id}", ["field", "value"],
                     [(f, agent.get(f)) for f in fields if f in agent])
        config = extra.get("config") or {}
        if config.get("values"):
            sources = config.get("sources", {})
            output.table("effective config", ["setting", "value", "from"],
                         [(k, v, sources.get(k)) for k, v in sorted(config["values"].items())])
        output.table("recent results", ["finished", "job", "exit", "state"], [
            (r.get("finished_at"), r.get("job_id"), r.get("exit_code"),
             "skipped" if r.get("skipped") else r.get("state"))
            for r in detail["recent_results"]
        ])

    guard(go)


@app.command()
def results(
    exec_id: Annotated[str | None, typer.Option("--exec", help="Only this exec.")] = None,
    pc: Annotated[str | None, typer.Option("--pc", help="Only this pc.")] = None,
    job: Annotated[str | None, typer.Option("--job", help="Only this job.")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """List recent results, newest first."""

    def go() -> None:
        with ApiClient(url) as api:
            page = api.get("/api/results", exec_id=exec_id, pc_id=pc, job_id=job, limit=limit)
        items = page.get("items", []) if isinstance(page, dict) else page
        if json_:
            for r in items:
                output.json_line(r)
            return
        output.table(
            "results",
            ["finished", "pc", "job", "exit", "state", "exec"],
            [
                (
                    r.get("finished_at"),
                    r.get("pc_id"),
                    r.get("job_id"),
                    r.get("exit_code"),
                    "skipped" if r.get("skipped") else r.get("state"),
                    r.get("exec_id"),
                )
                for r in items
            ],
        )

    guard(go)


executions_app = typer.Typer(no_args_is_help=False, help="Executions: list and show.")
app.add_typer(executions_app, name="executions")


@executions_app.callback(invoke_without_command=True)
def executions_list(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option("--job")] = None,
    status: Annotated[str | None, typer.Option("--status")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """List executions (newest first)."""
    if ctx.invoked_subcommand is not None:
        return

    def go() -> None:
        with ApiClient(url) as api:
            page = api.get("/api/executions", job_id=job, status=status, limit=limit)
        items = page.get("items", []) if isinstance(page, dict) else page
        if json_:
            for e in items:
                output.json_line(e)
            return
        output.table(
            "executions",
            ["exec_id", "job", "status", "expected", "finished", "failed", "created"],
            [
                (
                    e["exec_id"],
                    e.get("job_id"),
                    e.get("status"),
                    e.get("expected_count"),
                    e.get("finished_count"),
                    e.get("failed_count"),
                    e.get("created_at"),
                )
                for e in items
            ],
        )

    guard(go)


@executions_app.command("show")
def executions_show(exec_id: str, json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Show one execution with every pc's result."""

    def go() -> None:
        with ApiClient(url) as api:
            ex = api.get(f"/api/executions/{exec_id}")
        if json_:
            output.json_line(ex)
            return
        output.out.print(
            f"exec {ex['exec_id']}  job {ex.get('job_id')} v{ex.get('version')}  "
            f"status {ex.get('status')}  {ex.get('finished_count', 0)}/{ex.get('expected_count')}"
            " finished",
            markup=False,
        )
        print_results(ex.get("results", []))

    guard(go)


@executions_app.command("watch")
def executions_watch(exec_id: str, json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Follow an execution live until every expected pc has reported."""

    def go() -> None:
        with ApiClient(url) as api:
            ex = api.get(f"/api/executions/{exec_id}")
            if not wait_for_exec(api, ex, json_mode=json_):
                raise typer.Exit(1)

    guard(go)


@app.command()
def up(
    agents_n: Annotated[int, typer.Option("--agents", help="How many local agents.")] = 3,
    http_port: Annotated[int, typer.Option("--http-port")] = 8080,
    nats_port: Annotated[int, typer.Option("--nats-port")] = 4222,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="State lives here.")] = Path(
        ".kanade"
    ),
    examples: Annotated[
        Path | None, typer.Option("--examples", help="Job manifests to load.")
    ] = None,
    auth: Annotated[
        str, typer.Option("--auth", help="disabled (dev) or jwt (creates an admin user).")
    ] = "disabled",
) -> None:
    """Start a broker, the backend and N local agents; Ctrl-C stops them all.

    Example: kanade up --agents 3
    """
    from kanade.cli.up import run_up

    guard(
        lambda: run_up(
            agents_n=agents_n,
            http_port=http_port,
            nats_port=nats_port,
            data_dir=data_dir,
            auth=auth,
            examples=examples,
        )
    )


from kanade.cli import verbs_control  # noqa: E402 - registers its verbs on `app`

verbs_control.register(app)

from kanade.cli import verbs_admin  # noqa: E402 - registers its verbs on `app`

verbs_admin.register(app)

from kanade.cli import verbs_schedule  # noqa: E402 - registers its verbs on `app`

verbs_schedule.register(app)

from kanade.cli import verbs_bench  # noqa: E402 - registers `kanade bench`

verbs_bench.register(app)

from kanade.cli import verbs_jetstream  # noqa: E402 - registers `kanade jetstream`

verbs_jetstream.register(app)

verbs_rollout.register(app)  # rollout, approve, reject, approvals, job approve-unattended


def main() -> None:
    app(prog_name="kanade")


if __name__ == "__main__":
    sys.exit(main())
