"""Waiting for an execution's results: a live progress bar on a terminal, one line per
result as it arrives otherwise, and never past the wait's deadline (SPEC §4.3).

At the deadline the pcs still awaited are named and the wait fails; a pc the backend closed
as ``no_result`` (it never started by the exec's deadline) counts as done, not awaited.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kanade.cli import output
from kanade.cli.client import ApiClient, CliError

_POLL_S: Final = 0.05
GRACE_S: Final = 30.0
"""Extra wait past the script timeout (and starting deadline) for delivery and reporting."""
_DEFAULT_TIMEOUT_S: Final = 3600.0
_REQUEST_TIMEOUT_S: Final = 15.0
_STILL_WAITING_EVERY_S: Final = 10.0
_DONE_STATES: Final = frozenset({"finished", "reaped", "no_result"})
_ENDED_EXEC: Final = frozenset({"rejected"})  # nothing was ever sent: nothing to wait for


def target_body(all_: bool, groups: list[str] | None, pcs: list[str] | None) -> dict[str, Any]:
    if not (all_ or groups or pcs):
        raise CliError("no target: pass --all, --group G or --pc ID")
    return {"all": all_, "groups": groups or [], "pcs": pcs or []}


def _finished(r: Mapping[str, Any]) -> bool:
    return r.get("state") in _DONE_STATES


def result_state(r: Mapping[str, Any]) -> Any:
    """A result's state as tables show it: ``skipped`` wins over the delivery state."""
    return "skipped" if r.get("skipped") else r.get("state")


def _ok(r: Mapping[str, Any]) -> bool:
    return r.get("state") == "finished" and r.get("exit_code") == 0 and not r.get("skipped")


def wait_limit_s(
    created: Mapping[str, Any],
    *,
    timeout_s: float | None = None,
    starting_deadline_s: float | None = None,
    max_wait_s: float | None = None,
) -> float:
    """How long to wait: ``max_wait_s`` when given, else the latest a pc may start (the
    starting deadline) plus the script timeout (``timeout_s``, else the exec's, else an
    hour) plus :data:`GRACE_S`."""
    if max_wait_s is not None:
        return max(0.0, max_wait_s)
    script = timeout_s or float(created.get("timeout_s") or _DEFAULT_TIMEOUT_S)
    return (starting_deadline_s or 0.0) + script + GRACE_S


def _seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f}".rstrip("0").rstrip(".") + "s"
    return f"{s // 60:.0f}m{s % 60:02.0f}s"


def _result_json(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "pc_id": r.get("pc_id"),
        "state": result_state(r),
        "exit_code": r.get("exit_code"),
        "stdout": r.get("stdout"),
        "stderr": r.get("stderr"),
        "skipped": bool(r.get("skipped")),
        "note": r.get("note"),
    }


def wait_for_exec(
    api: ApiClient,
    created: Mapping[str, Any],
    *,
    json_mode: bool,
    timeout_s: float | None = None,
    starting_deadline_s: float | None = None,
    max_wait_s: float | None = None,
) -> bool:
    """Poll until every expected pc reported or was closed (or the wait's deadline, see
    :func:`wait_limit_s`); print the results; True if all ran and exited 0.

    On a terminal a progress bar, then every result. Otherwise (a pipe, a log, ``--json``)
    each result is printed as it arrives, so an interrupted wait has said what it knew.
    At the deadline the pcs still awaited are named (``error: …``) and the wait fails.
    """
    exec_id = str(created["exec_id"])
    expected = int(created.get("expected_count") or 0)
    if expected == 0:
        raise CliError("no alive agent matches the target; see `kanade agents`")
    limit = wait_limit_s(
        created,
        timeout_s=timeout_s,
        starting_deadline_s=starting_deadline_s,
        max_wait_s=max_wait_s,
    )
    started = time.monotonic()
    deadline = started + limit
    live_bar = not json_mode and output.err.is_terminal
    stream = not live_bar  # no bar to watch: say each result as it arrives
    if not json_mode:
        output.err.print(
            f"exec {exec_id}: waiting for {expected} pc(s), at most {_seconds(limit)}",
            markup=False,
        )
    ex: dict[str, Any] = {}
    printed: set[str] = set()
    last_error: CliError | None = None
    next_note = started + _STILL_WAITING_EVERY_S
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=output.err,
        transient=True,
        disable=not live_bar,
    ) as progress:
        task = progress.add_task(f"exec {exec_id[:12]}", total=expected)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                ex = api.request(
                    "GET",
                    f"/api/executions/{exec_id}",
                    timeout=min(_REQUEST_TIMEOUT_S, max(0.1, remaining)),
                )
                last_error = None
            except CliError as exc:  # a backend restart, a slow answer: retry until the deadline
                last_error = exc
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                continue
            rows = ex.get("results", [])
            done = [r for r in rows if _finished(r)]
            progress.update(task, completed=len(done))
            if stream:
                for r in done:
                    key = str(r.get("pc_id"))
                    if key not in printed:
                        printed.add(key)
                        _emit(r, json_mode)
            if len(done) >= max(expected, len(rows)) or ex.get("status") in _ENDED_EXEC:
                break
            now = time.monotonic()
            if stream and not json_mode and now >= next_note:
                next_note = now + _STILL_WAITING_EVERY_S
                waiting = [str(r.get("pc_id")) for r in rows if not _finished(r)]
                output.err.print(
                    f"still waiting for {len(waiting)} pc(s) after {_seconds(now - started)}: "
                    f"{_names(waiting)}",
                    markup=False,
                )
            time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
    rows = ex.get("results", [])
    for r in rows:
        if not stream or str(r.get("pc_id")) not in printed:
            _emit(r, json_mode)
    missing = [str(r.get("pc_id")) for r in rows if not _finished(r)]
    if not rows and last_error is not None:
        output.fail(f"gave up after {_seconds(limit)}: {last_error.message}")
        return False
    if missing:
        output.fail(
            f"deadline reached after {_seconds(limit)}: still waiting for {len(missing)} of "
            f"{max(expected, len(rows))} pc(s): {_names(missing)}; the exec goes on — see "
            f"`kanade executions show {exec_id}`"
        )
    return not missing and all(_ok(r) for r in rows) and len(rows) >= expected


def _names(pcs: list[str], limit: int = 20) -> str:
    more = len(pcs) - limit
    return ", ".join(pcs[:limit]) + (f" and {more} more" if more > 0 else "")


def _emit(r: Mapping[str, Any], json_mode: bool) -> None:
    if json_mode:
        output.json_line(_result_json(r))
    else:
        print_results([dict(r)])


def print_results(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        code = r.get("exit_code")
        state = r.get("state")
        if state in ("pending", "in_flight"):
            status = f"[yellow]{state}[/]"
        elif state == "no_result":
            status = "[red]no result[/]"
        elif r.get("skipped"):
            status = f"[yellow]skipped ({code})[/]"
        elif code == 0:
            status = "[green]exit 0[/]"
        else:
            status = f"[red]exit {code}[/]"
        output.out.print(f"[bold]{escape(str(r.get('pc_id')))}[/]  {status}")
        for key in ("stdout", "stderr"):
            text = (r.get(key) or "").rstrip("\n")
            if text:
                for line in text.splitlines():
                    output.out.print(f"  {'|' if key == 'stdout' else '!'} {line}", markup=False)
        if r.get("note"):
            output.out.print(f"  note: {r['note']}", markup=False)
