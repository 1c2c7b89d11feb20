"""The fleet as the backend sees it: ``kanade agents`` (list, show), ``ping`` (one fresh
heartbeat), ``inventory`` and ``checks`` (the latest facts per pc)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient, CliError
from kanade.cli.common import JsonOpt, LimitOpt, UrlOpt, guard, list_from_api, page_items
from kanade.cli.waiting import result_state
from kanade.core.fleet import AgentStatus

CheckStatus = Literal["ok", "warn", "fail", "unknown"]

agents_app = typer.Typer(no_args_is_help=False, help="Agents: list (default) and show.")


def _agent_rows(
    api: ApiClient, status: AgentStatus | None, group: str | None, os_family: str | None,
    version: str | None,
) -> list[dict[str, Any]]:
    page = api.get("/api/agents", status=status, group=group, os_family=os_family,
                   version=version, limit=100_000)
    try:  # schedule-set drift (desired vs applied); an older backend lacks it
        drift = {d["pc_id"]: d for d in api.get("/api/agents/drift").get("items", [])}
    except CliError:
        drift = {}
    items = page_items(page)
    for a in items:
        d = drift.get(a["pc_id"])
        if d is not None:
            a["drift"] = d["drift"]
            a["expected_schedule_set_version"] = d["expected_version"]
    return items


@agents_app.callback(invoke_without_command=True)
def agents(
    ctx: typer.Context,
    status: Annotated[AgentStatus | None, typer.Option("--status", help="Only these.")] = None,
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
    status: AgentStatus | None, group: str | None, os_family: str | None, version: str | None,
    json_: bool, url: str | None,
) -> None:
    def go() -> None:
        with ApiClient(url) as api:
            items = _agent_rows(api, status, group, os_family, version)
        output.listing(
            items,
            json_=json_,
            title="agents",
            columns=["pc_id", "status", "version", "os", "groups", "queue", "schedules",
                     "last seen"],
            row=lambda a: (
                a["pc_id"],
                # A full disk is the news: it refuses new work (SPEC §7).
                f"{a.get('status')}, DISK FULL" if a.get("disk_full") else a.get("status"),
                a.get("agent_version"),
                f"{a.get('os_family', '')} {a.get('os_version', '')}".strip(),
                ",".join(a.get("groups") or []),
                a.get("queue_length", 0),
                "?" if "drift" not in a else ("DRIFT" if a["drift"] else "in sync"),
                a.get("last_seen"),
            ),
        )

    guard(go)


@agents_app.command("list")
def agents_list(
    status: Annotated[AgentStatus | None, typer.Option("--status")] = None,
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
                  "disk_full", "disk_error", "disk_free_bytes", "held_messages",
                  "schedule_set_version", "last_command_at", "last_seen", "first_seen"]
        from kanade.cli.commands.config import setting_source, show_setting

        output.table(f"agent {pc_id}", ["field", "value"], [
            (f, output.size(agent[f]) if f.endswith("_bytes") else agent[f])
            for f in fields if f in agent
        ])
        config = extra.get("config") or {}
        if config.get("values"):
            sources = config.get("sources", {})
            output.table("effective config", ["setting", "value", "from"], [
                (k, show_setting(v, k), setting_source(sources.get(k, "?")))
                for k, v in sorted(config["values"].items())
            ])
        output.table("recent results", ["finished", "job", "exit", "state"], [
            (r.get("finished_at"), r.get("job_id"), r.get("exit_code"), result_state(r))
            for r in detail["recent_results"]
        ])

    guard(go)


def ping(
    pc_id: Annotated[str, typer.Argument(help="The agent's pc id.")],
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 5.0,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Ask one agent for a fresh heartbeat (request/reply over NATS).

    Exits 1 with "no answer from PC in N s" when it does not answer (N: the time it
    really waited), or at once when it is not connected or not a known pc.

    Example: kanade ping local-1 --timeout 2
    """

    def go() -> None:
        if timeout <= 0 or timeout > 60:
            raise CliError("--timeout: must be > 0 and <= 60 seconds")
        with ApiClient(url, timeout=timeout + 10, options={"pc_id": "PC_ID"}) as api:
            hb = api.request(
                "POST", f"/api/agents/{pc_id}/ping", params={"timeout": f"{timeout:g}"}
            )
        if json_:
            output.json_line(hb)
            return
        output.out.print(
            f"[bold]{hb['pc_id']}[/] answered in {hb.get('rtt_ms', 0):.1f} ms: "
            f"agent {hb.get('agent_version')} on {hb.get('hostname')} "
            f"({hb.get('os_family')} {hb.get('os_version', '')})".rstrip()
        )
        output.table(
            None,
            ["sent at", "groups", "running", "queued", "cpu %", "memory", "last command"],
            [
                (
                    hb.get("sent_at"),
                    ",".join(hb.get("groups") or []) or "-",
                    hb.get("running"),
                    hb.get("queue_length"),
                    hb.get("cpu_percent"),
                    output.size(hb.get("rss_bytes")),
                    hb.get("last_command_at") or "-",
                )
            ],
        )

    guard(go)


# --- inventory and checks -----------------------------------------------------------------
def inventory(
    pc: Annotated[str | None, typer.Option("--pc")] = None,
    job: Annotated[str | None, typer.Option("--job")] = None,
    limit: LimitOpt = 100,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Latest inventory facts per pc and job."""

    def go() -> None:
        list_from_api(url, "/api/inventory", {"pc_id": pc, "job_id": job, "limit": limit},
                      json_=json_, title="inventory",
                      columns=["pc_id", "job_id", "observed_at", "facts"])

    guard(go)


def checks(
    status: Annotated[CheckStatus | None, typer.Option("--status")] = None,
    pc: Annotated[str | None, typer.Option("--pc")] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    limit: LimitOpt = 100,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Latest check status per pc (compliance view); exits 1 if any shown check fails."""

    def go() -> None:
        items = list_from_api(
            url, "/api/checks", {"status": status, "pc_id": pc, "name": name, "limit": limit},
            json_=json_, title="checks",
            columns=["name", "pc_id", "status", "detail", "observed_at"])
        if any(i.get("status") == "fail" for i in items):
            raise typer.Exit(1)

    guard(go)
