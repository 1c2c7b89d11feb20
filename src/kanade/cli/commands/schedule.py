"""``kanade schedule``: when and where a job runs (validate, create, list, show, preview,
enable, disable, delete)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient, CliError
from kanade.cli.common import JsonOpt, UrlOpt, guard, page_items

FileArg = Annotated[Path, typer.Argument(help="Schedule (YAML or JSON).")]
IdArg = Annotated[str, typer.Argument(metavar="SCHEDULE_ID", help="The schedule id.")]

app = typer.Typer(
    no_args_is_help=True,
    help="Schedules: when and where a job runs (validate, create, list, show, preview, "
    "enable, disable, delete).",
)


def _when(item: Mapping[str, Any]) -> str:
    when = item.get("when") or {}
    for shape, value in when.items():
        if shape == "calendar" and isinstance(value, dict):
            days = value.get("days")
            return f"calendar {value.get('at')}" + (f" {','.join(days)}" if days else "")
        if isinstance(value, dict) and "every" in value:
            return f"{shape} every {value['every']}"
        return f"{shape} {value}"
    return "?"


def _target(item: Mapping[str, Any]) -> str:
    t = item.get("target") or {}
    parts = ["all"] if t.get("all") else []
    parts += [f"group:{g}" for g in t.get("groups") or []]
    parts += [f"pc:{p}" for p in t.get("pcs") or []]
    return ",".join(parts) or "-"


def _list_row(s: Mapping[str, Any]) -> tuple[Any, ...]:
    st = s.get("status") or {}
    return (
        s["id"],
        s.get("job_id"),
        _when(s),
        _target(s),
        s.get("runs_on"),
        "yes" if s.get("enabled", True) else "no",
        _next_fire(st),
        st.get("last_fire"),
        "{}/{}/{}".format(
            st.get("fired_count", 0), st.get("skipped_count", 0), st.get("missed_count", 0)
        ),
    )


def _next_fire(st: Mapping[str, Any]) -> str:
    """The next fire, or why there is none / what it waits for."""
    nxt, note = st.get("next_fire"), st.get("next_fire_note")
    if nxt and note:
        return f"{nxt} ({note})"
    return str(nxt or note or "-")


def _print_summary(item: dict[str, Any], verb: str, *, warn_revoked: bool = True) -> None:
    st = item.get("status") or {}
    output.out.print(
        f"schedule {item['id']} {verb}: job {item.get('job_id')}, {_when(item)}, "
        f"{'enabled' if st.get('enabled', item.get('enabled')) else 'disabled'}, "
        f"next fire {_next_fire(st)}",
        markup=False,
    )
    if warn_revoked and st.get("job_revoked"):
        job = item.get("job_id")
        output.warn(
            f"job {job} is revoked: every agent skips this schedule's fires (exit 126); "
            f"lift it with `kanade unrevoke {job}`"
        )


@app.command("validate")
def schedule_validate(
    file: FileArg,
    remote: Annotated[
        bool, typer.Option("--remote", help="Also check job_id against the backend's catalog.")
    ] = False,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Check a schedule; exit 1 naming every field path and reason.

    Example: kanade schedule validate examples/schedules/nightly.yaml
    """

    def go() -> None:
        from kanade.cli.documents import read_schedule_file  # core models: only when reading

        data, schedule = read_schedule_file(file)
        if remote:
            with ApiClient(url) as api:
                api.send_document("POST", "/api/schedules/validate", data)
        if json_:
            output.json_line({"ok": True, "id": schedule.id, "job_id": schedule.job_id})
        else:
            output.out.print(
                f"{file}: ok (schedule {schedule.id}, job {schedule.job_id}, "
                f"{schedule.when.shape}, runs_on {schedule.runs_on})",
                markup=False,
            )

    guard(go)


@app.command("create")
def schedule_create(
    file: FileArg,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace an existing schedule with this id.")
    ] = False,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Upload a schedule (the backend checks that its job exists).

    Example: kanade schedule create examples/schedules/nightly.yaml
    """

    def go() -> None:
        from kanade.cli.documents import read_schedule_file  # core models: only when reading

        data, schedule = read_schedule_file(file)
        with ApiClient(url) as api:
            if replace:
                stored = api.send_document("PUT", f"/api/schedules/{schedule.id}", data)
            else:
                try:
                    stored = api.send_document("POST", "/api/schedules", data)
                except CliError as exc:
                    if exc.status != 409:
                        raise
                    raise CliError(
                        f"schedule {schedule.id} already exists with other content; pass "
                        f"--replace to replace it, or `kanade schedule delete {schedule.id}` "
                        "first",
                        status=exc.status,
                        body=exc.body,
                    ) from None
        if json_:
            output.json_line(stored)
        else:
            _print_summary(stored, "replaced" if replace else "stored")

    guard(go)


@app.command("list")
def schedule_list(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """List schedules with next fire, last fire and fired/skipped/missed counts."""

    def go() -> None:
        with ApiClient(url) as api:
            page = api.get("/api/schedules")
        output.listing(
            page_items(page),
            json_=json_,
            title="schedules",
            columns=["id", "job", "when", "target", "runs on", "on", "next fire", "last fire",
                     "f/s/m"],
            row=_list_row,
        )

    guard(go)


@app.command("show")
def schedule_show(schedule_id: IdArg, json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Show one schedule, its status and its recent decisions (with skip reasons)."""

    def go() -> None:
        with ApiClient(url) as api:
            item = api.get(f"/api/schedules/{schedule_id}")
        if json_:
            output.json_line(item)
            return
        import yaml

        doc = {k: v for k, v in item.items() if k not in ("status", "decisions")}
        output.out.print(yaml.safe_dump(doc, sort_keys=False).rstrip(), markup=False)
        st = item.get("status") or {}
        local = f" ({st['next_fire_local']})" if st.get("next_fire_local") else ""
        output.out.print(
            f"next fire {_next_fire(st)}{local}  "
            f"last fire {st.get('last_fire') or '-'}  fired {st.get('fired_count', 0)}  "
            f"skipped {st.get('skipped_count', 0)}  missed {st.get('missed_count', 0)}",
            markup=False,
        )
        if st.get("job_revoked"):
            output.warn(
                f"job {item.get('job_id')} is revoked: every fire is skipped (126); lift it "
                f"with `kanade unrevoke {item.get('job_id')}`"
            )
        decisions = item.get("decisions") or []
        if decisions:
            output.table(
                "recent decisions",
                ["decided", "nominal", "result", "reason", "detail", "exec"],
                [
                    (
                        d.get("decided_at"),
                        d.get("nominal_time"),
                        d.get("result"),
                        d.get("reason"),
                        d.get("detail"),
                        d.get("exec_id"),
                    )
                    for d in decisions
                ],
            )

    guard(go)


@app.command("preview")
def schedule_preview(
    schedule_id: IdArg,
    n: Annotated[
        int, typer.Option("--n", "-n", min=1, max=500, help="How many fire times.")
    ] = 10,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """The next fire times (schedule zone and UTC); for per_pc / per_target, each targeted
    pc with whether it would fire now and why."""

    def go() -> None:
        with ApiClient(url) as api:
            pv = api.get(f"/api/schedules/{schedule_id}/preview", n=n)
        if json_:
            output.json_line(pv)
            return
        disabled = not pv.get("enabled", True)
        # A reconcile shape's times are polls: a pc fires at one only when it is due.
        polls = pv.get("shape") in ("per_pc", "per_target")
        output.table(
            f"next {'polls' if polls else 'fires'} of {schedule_id} ({pv.get('tz')})"
            + (" — DISABLED: it fires at these times only once enabled" if disabled else ""),
            ["#", "local", "utc", *(["state"] if disabled else [])],
            [
                (i + 1, f.get("local"), f.get("utc"),
                 *(["disabled"] if f.get("disabled") else []))
                for i, f in enumerate(pv.get("fires", []))
            ],
        )
        if pv.get("next_fire") or pv.get("next_fire_note"):
            output.out.print(f"next fire: {_next_fire(pv)}", markup=False)
        if pv.get("gate"):
            output.out.print(f"held now: {pv['gate']}", markup=False)
        for w in pv.get("warnings") or []:
            output.out.print(f"warning: {w}", markup=False)
        if pv.get("pcs"):
            output.table(
                "targeted pcs",
                ["pc", "would fire", "reason", "detail"],
                [
                    (
                        p["pc_id"],
                        "yes" if p.get("would_fire") else "no",
                        p.get("reason"),
                        p.get("detail"),
                    )
                    for p in pv["pcs"]
                ],
            )

    guard(go)


@app.command("enable")
def schedule_enable(schedule_id: IdArg, json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Enable a schedule (it fires from its next occurrence; nothing missed is caught up)."""

    def go() -> None:
        with ApiClient(url) as api:
            item = api.post(f"/api/schedules/{schedule_id}/enable")
        if json_:
            output.json_line(item)
        else:
            _print_summary(item, "enabled")

    guard(go)


@app.command("disable")
def schedule_disable(
    schedule_id: IdArg,
    cascade: Annotated[
        bool, typer.Option("--cascade", help="Also revoke the job (agents skip it, 126).")
    ] = False,
    cascade_kill: Annotated[
        bool,
        typer.Option("--cascade-kill", help="Revoke the job and kill its in-flight runs too."),
    ] = False,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Disable a schedule (soft), optionally revoking its job and killing its runs.

    Example: kanade schedule disable nightly --cascade-kill
    """

    def go() -> None:
        with ApiClient(url) as api:
            item = api.post(
                f"/api/schedules/{schedule_id}/disable",
                None,
                cascade="true" if cascade else None,
                cascade_kill="true" if cascade_kill else None,
            )
        if json_:
            output.json_line(item)
            return
        _print_summary(item, "disabled", warn_revoked=False)
        if item.get("revoked"):
            output.out.print(f"job {item['revoked']['job_id']} revoked", markup=False)
        for k in item.get("killed") or []:
            output.out.print(f"killed exec {k['exec_id']} ({k.get('status')})", markup=False)

    guard(go)


@app.command("delete")
def schedule_delete(schedule_id: IdArg, json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Delete a schedule (its past executions and decisions are kept)."""

    def go() -> None:
        with ApiClient(url) as api:
            item = api.delete(f"/api/schedules/{schedule_id}")
        if json_:
            output.json_line(item)
        else:
            output.out.print(f"schedule {schedule_id} deleted", markup=False)

    guard(go)
