"""Waiting for an execution's results with a live progress display."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kanade.cli import output
from kanade.cli.client import ApiClient, CliError

_POLL_S = 0.05
# Extra time past the script timeout for delivery, jitter and reporting.
_GRACE_S = 30.0


def target_body(all_: bool, groups: list[str] | None, pcs: list[str] | None) -> dict[str, Any]:
    if not (all_ or groups or pcs):
        raise CliError("no target: pass --all, --group G or --pc ID")
    return {"all": all_, "groups": groups or [], "pcs": pcs or []}


def _finished(r: dict[str, Any]) -> bool:
    return r.get("state") in ("finished", "reaped")


def result_state(r: Mapping[str, Any]) -> Any:
    """A result's state as tables show it: ``skipped`` wins over the delivery state."""
    return "skipped" if r.get("skipped") else r.get("state")


def _ok(r: dict[str, Any]) -> bool:
    return _finished(r) and r.get("exit_code") == 0 and not r.get("skipped")


def wait_for_exec(
    api: ApiClient, created: dict[str, Any], *, json_mode: bool, timeout_s: float | None = None
) -> bool:
    """Poll until every expected pc reported (or the deadline); print results; True if all ok.

    ``timeout_s`` is the script timeout; without it the exec's own ``timeout_s`` (or
    an hour) bounds the wait.
    """
    exec_id = created["exec_id"]
    expected = int(created.get("expected_count") or 0)
    if expected == 0:
        raise CliError("no alive agent matches the target; see `kanade agents`")
    limit = timeout_s or float(created.get("timeout_s") or 3600.0)
    deadline = time.monotonic() + limit + _GRACE_S
    show_progress = not json_mode and output.err.is_terminal
    ex: dict[str, Any] = {}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=output.err,
        transient=True,
        disable=not show_progress,
    ) as progress:
        task = progress.add_task(f"exec {exec_id[:12]}", total=expected)
        while True:
            ex = api.get(f"/api/executions/{exec_id}")
            done = [r for r in ex.get("results", []) if _finished(r)]
            progress.update(task, completed=len(done))
            if len(done) >= expected or time.monotonic() > deadline:
                break
            time.sleep(_POLL_S)
    rows = ex.get("results", [])
    if json_mode:
        for r in rows:
            output.json_line(
                {
                    "pc_id": r.get("pc_id"),
                    "exit_code": r.get("exit_code"),
                    "stdout": r.get("stdout"),
                    "stderr": r.get("stderr"),
                    "skipped": bool(r.get("skipped")),
                }
            )
    else:
        print_results(rows)
    missing = [r["pc_id"] for r in rows if not _finished(r)]
    if missing:
        output.fail(f"no result from {len(missing)} pc(s) in time: {', '.join(missing)}")
    return not missing and all(_ok(r) for r in rows) and len(rows) >= expected


def print_results(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        code = r.get("exit_code")
        state = r.get("state")
        if state == "pending" or state == "in_flight":
            status = f"[yellow]{state}[/]"
        elif r.get("skipped"):
            status = f"[yellow]skipped ({code})[/]"
        elif code == 0:
            status = "[green]exit 0[/]"
        else:
            status = f"[red]exit {code}[/]"
        output.out.print(f"[bold]{r.get('pc_id')}[/]  {status}")
        for key in ("stdout", "stderr"):
            text = (r.get(key) or "").rstrip("\n")
            if text:
                for line in text.splitlines():
                    output.out.print(f"  {'|' if key == 'stdout' else '!'} {line}", markup=False)
        if r.get("note"):
            output.out.print(f"  note: {r['note']}", markup=False)
