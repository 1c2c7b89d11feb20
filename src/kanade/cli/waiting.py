"""Waiting for an execution's results: a live progress bar on a terminal, one line per
result as it arrives otherwise, and never past the wait's deadline (SPEC §4.3). With
``live``, the scripts' output is printed as they write it (SPEC §4.12, cli/liveview.py).

At the deadline the pcs still awaited are named and the wait fails; a pc the backend closed
as ``no_result`` (it never started by the exec's deadline) counts as done, not awaited.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from kanade.cli import output
from kanade.cli.client import ApiClient, CliError

if TYPE_CHECKING:  # imported by the waits that show live output (CLI start-up)
    from kanade.cli.liveview import LivePrinter

_POLL_S: Final = 0.05
_FIRST_POLL_S: Final = 0.005
"""Between two answers that brought nothing new (a backend that does not wait, see
:data:`_LONG_POLL_S`): first quickly, then backing off 1.5x per poll to :data:`_POLL_S`."""
_LONG_POLL_S: Final = 5.0
"""How long the backend holds each request until one more pc is done (``done_above``):
the answer comes the moment a result is stored, with no poll interval to wait out."""
_LIVE_POLL_S: Final = 0.2
"""The same while live output is shown: the lines read meanwhile are printed between
requests."""
GRACE_S: Final = 30.0
"""Extra wait past the script timeout (and starting deadline) for delivery and reporting."""
_DEFAULT_TIMEOUT_S: Final = 3600.0
_REQUEST_TIMEOUT_S: Final = 15.0
_STILL_WAITING_EVERY_S: Final = 10.0
_FIRST_NOTE_S: Final = 3.0
"""Off a terminal, the first progress line comes this soon (then every 10 s)."""
_DONE_STATES: Final = frozenset({"finished", "reaped", "no_result"})
_ENDED_EXEC: Final = frozenset({"rejected"})  # nothing was ever sent: nothing to wait for
LIVE_GRACE_S: Final = 3.0
"""How long a finished pc's last live chunks may lag behind its result before the result is
printed anyway (with its output)."""


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


def _result_json(r: Mapping[str, Any], exec_id: str) -> dict[str, Any]:
    return {
        "exec_id": exec_id,
        "pc_id": r.get("pc_id"),
        "state": result_state(r),
        "exit_code": r.get("exit_code"),
        "stdout": r.get("stdout"),
        "stderr": r.get("stderr"),
        "skipped": bool(r.get("skipped")),
        "note": r.get("note"),
    }


@dataclass
class Followed:
    """How a wait ended: ``ok`` when every expected pc ran and exited 0; the last rows."""

    ok: bool
    rows: list[dict[str, Any]] = field(default_factory=list)


def wait_for_exec(
    api: ApiClient,
    created: Mapping[str, Any],
    *,
    json_mode: bool,
    timeout_s: float | None = None,
    starting_deadline_s: float | None = None,
    max_wait_s: float | None = None,
    live: bool = False,
) -> bool:
    """:func:`follow_exec`; True if every expected pc ran and exited 0."""
    return follow_exec(
        api,
        created,
        json_mode=json_mode,
        timeout_s=timeout_s,
        starting_deadline_s=starting_deadline_s,
        max_wait_s=max_wait_s,
        live=live,
    ).ok


def follow_exec(
    api: ApiClient,
    created: Mapping[str, Any],
    *,
    json_mode: bool,
    timeout_s: float | None = None,
    starting_deadline_s: float | None = None,
    max_wait_s: float | None = None,
    live: bool = False,
) -> Followed:
    """Poll until every expected pc reported or was closed (or the wait's deadline, see
    :func:`wait_limit_s`); print the results.

    On a terminal a progress bar, then every result. Otherwise (a pipe, a log, ``--json``)
    each result is printed as it arrives, so an interrupted wait has said what it knew,
    with a progress line every few seconds on stderr. Results go to stdout as they arrive
    whenever stdout is not a terminal, even with a bar on a terminal stderr. Every JSON
    line and the closing summary name the exec. At the deadline the pcs still awaited are
    named (``error: …``) and the wait fails.
    ``live``: the scripts' output is printed as they write it (JSON lines with
    ``--json``); a result whose whole output was shown is then announced by its status line.
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
    live_bar = not json_mode and output.is_terminal(stderr=True)
    # No bar to watch, or results read by a program: say each result as it arrives.
    stream = not live_bar or not output.is_terminal()
    if not json_mode:
        output.say(
            f"exec {exec_id}: waiting for {expected} pc(s), at most {_seconds(limit)}",
            stderr=True,
        )
    ex: dict[str, Any] = {}
    printed: set[str] = set()
    last_error: CliError | None = None
    next_note = started + _FIRST_NOTE_S
    poll_s = _FIRST_POLL_S
    feed = printer = None
    if live:
        from kanade.cli.liveview import LiveFeed, LivePrinter

        feed = LiveFeed(api, exec_id).start()
        printer = LivePrinter(prefix=expected > 1, json_mode=json_mode)
    done_at: dict[str, float] = {}  # when each pc's row was first seen finished
    with _progress(live_bar) as progress:
        task = progress.add_task(f"exec {exec_id[:12]}", total=expected)
        if printer is not None and live_bar and output.is_terminal():
            printer.screen = progress.console  # one screen: the lines go above the bar
        while True:
            if feed is not None and printer is not None:
                printer.handle(feed.drain())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            hold = max(0.0, min(_LIVE_POLL_S if feed is not None else _LONG_POLL_S,
                                remaining - 0.5))  # fmt: skip
            done_before = sum(1 for r in ex.get("results", []) if _finished(r))
            try:
                ex = api.request(
                    "GET",
                    f"/api/executions/{exec_id}",
                    params={"done_above": done_before, "wait": round(hold, 3)},
                    timeout=min(_REQUEST_TIMEOUT_S + hold, max(0.1, remaining)),
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
                now = time.monotonic()
                for r in done:
                    key = str(r.get("pc_id"))
                    if key in printed:
                        continue
                    # Its last live chunks may still be on their way: shown before its status.
                    lagging = printer is not None and printer.awaiting_final(key)
                    if lagging and now - done_at.setdefault(key, now) < LIVE_GRACE_S:
                        continue
                    printed.add(key)
                    _emit(r, json_mode, exec_id, printer)
            if len(done) >= max(expected, len(rows)) or ex.get("status") in _ENDED_EXEC:
                if feed is not None and printer is not None:
                    feed.wait_for_finals(printer, [str(r.get("pc_id")) for r in rows],
                                         LIVE_GRACE_S)  # fmt: skip
                break
            now = time.monotonic()
            if not live_bar and not json_mode and now >= next_note:
                next_note = now + _STILL_WAITING_EVERY_S
                waiting = [str(r.get("pc_id")) for r in rows if not _finished(r)]
                output.say(
                    f"{len(done)}/{max(expected, len(rows))} finished after "
                    f"{_seconds(now - started)}; still waiting for {len(waiting)} pc(s): "
                    f"{_names(waiting)}",
                    stderr=True,
                )
            if len(done) > done_before:
                poll_s = _FIRST_POLL_S  # it moved: ask again at once
                continue
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
            poll_s = min(_POLL_S, poll_s * 1.5)
    if feed is not None and printer is not None:
        feed.close()
        printer.handle(feed.drain())
        printer.finish()
    rows = ex.get("results", [])
    for r in rows:
        if not stream or str(r.get("pc_id")) not in printed:
            _emit(r, json_mode, exec_id, printer)
    missing = [str(r.get("pc_id")) for r in rows if not _finished(r)]
    if not rows and last_error is not None:
        output.fail(f"gave up after {_seconds(limit)}: {last_error.message}")
        return Followed(False)
    if missing:
        output.fail(
            f"deadline reached after {_seconds(limit)}: still waiting for {len(missing)} of "
            f"{max(expected, len(rows))} pc(s): {_names(missing)}; the exec goes on — see "
            f"`kanade executions show {exec_id}`"
        )
    ok = not missing and all(_ok(r) for r in rows) and len(rows) >= expected
    if not json_mode and rows:
        good = sum(1 for r in rows if _ok(r))
        output.say(
            f"exec {exec_id}: {good}/{max(expected, len(rows))} succeeded"
            + ("" if ok else f"; details: `kanade executions show {exec_id}`")
        )
    return Followed(ok, [dict(r) for r in rows])


class _NoBar:
    """The bar's interface when there is no bar (and no rich to import for it)."""

    console: Any = None

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: int) -> int:
        return 0

    def update(self, task: int, completed: int) -> None:
        return None


def _progress(live: bool) -> Any:
    """A live bar on the terminal, else a stand-in: off a terminal (and under --json) rich
    is never imported (start-up time)."""
    if not live:
        return _NoBar()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=output.err,
        transient=True,
    )


def _names(pcs: list[str], limit: int = 20) -> str:
    more = len(pcs) - limit
    return ", ".join(pcs[:limit]) + (f" and {more} more" if more > 0 else "")


def _emit(
    r: Mapping[str, Any], json_mode: bool, exec_id: str, printer: LivePrinter | None = None
) -> None:
    if json_mode:
        output.json_line(_result_json(r, exec_id))
    else:
        pc = str(r.get("pc_id"))
        shown = printer is not None and printer.complete(pc)
        if printer is not None and not shown and _finished(r):
            printer.settled(pc)  # its output is printed now, not again from late chunks
        print_results([dict(r)], with_output=not shown)


def note_beyond(note: str | None, stderr: str | None) -> str:
    """The parts of a result's note not already in its stderr: a skipped run carries its
    reason in both, and it is said once."""
    if not note:
        return ""
    seen = stderr or ""
    return "; ".join(p for p in note.split("; ") if p.strip() and p.strip() not in seen)


def print_results(rows: list[dict[str, Any]], *, with_output: bool = True) -> None:
    """Each row's status line, its output (unless ``with_output`` is False: it was shown
    live) and what its note adds."""
    for r in rows:
        code = r.get("exit_code")
        state = r.get("state")
        status: tuple[str, str]
        if state in ("pending", "in_flight"):
            status = (str(state), "yellow")
        elif state == "no_result":
            status = ("no result", "red")
        elif r.get("skipped"):
            status = (f"skipped ({code})", "yellow")
        elif code == 0:
            status = ("exit 0", "green")
        else:
            status = (f"exit {code}", "red")
        output.say((str(r.get("pc_id")), "bold"), "  ", status)
        for key in ("stdout", "stderr") if with_output else ():
            text = (r.get(key) or "").rstrip("\n")
            if text:
                for line in text.splitlines():
                    output.say(f"  {'|' if key == 'stdout' else '!'} {line}")
        note = note_beyond(r.get("note"), r.get("stderr") if with_output else None)
        if note:
            output.say(f"  note: {note}")
