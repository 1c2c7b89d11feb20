"""``kanade run``: an ad-hoc script on a target, waited for — the body both command-line
parsers call (typer's, in :mod:`kanade.cli.commands.exec`, and the start-up fast path,
:mod:`kanade.cli.fastpath`). Free of typer: the fast path must not import it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kanade.cli.client import ApiClient, CliError
from kanade.cli.waiting import target_body, wait_for_exec

TARGET_OPTIONS = {
    "target.all": "--all",
    "target.groups": "--group",
    "target.pcs": "--pc",
    "target": "--all/--group/--pc",
    "rollout.waves": "--wave",
    "rollout.halt_on_failure_rate": "--halt-on-failure-rate",
    "jitter": "--jitter",
    "starting_deadline": "--starting-deadline",
    "timeout": "--timeout",
    "shell": "--shell",
    "script": "SCRIPT",
}
"""Exec and run body fields and the options that set them (error details)."""


@dataclass(frozen=True)
class RunArgs:
    """A ``kanade run`` command line, parsed (the defaults are the options' defaults)."""

    script: tuple[str, ...]
    all_: bool = False
    groups: tuple[str, ...] = ()
    pcs: tuple[str, ...] = ()
    shell: str = "sh"
    timeout: str = "60s"
    starting_deadline: str | None = None
    max_wait: str | None = None
    force: bool = False
    json_: bool = False
    url: str | None = None


def duration_s(text: str, option: str) -> float:
    """``text`` in the duration grammar (``30s``, ``1h30m``), in seconds; a clear error
    naming ``option`` otherwise."""
    from kanade.core.duration_text import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise CliError(f"{option}: {exc}") from exc


def run_adhoc(args: RunArgs) -> bool:
    """POST the run, then wait for every expected agent (:func:`wait_for_exec`); True when
    all of them ran it and exited 0."""
    timeout_s = duration_s(args.timeout, "--timeout")
    body: dict[str, Any] = {
        "script": " ".join(args.script),
        "shell": args.shell,
        "timeout": args.timeout,
        "target": target_body(args.all_, list(args.groups) or None, list(args.pcs) or None),
    }
    deadline_s = None
    if args.starting_deadline is not None:
        deadline_s = duration_s(args.starting_deadline, "--starting-deadline")
        body["starting_deadline"] = args.starting_deadline
    wait_s = None if args.max_wait is None else duration_s(args.max_wait, "--max-wait")
    with ApiClient(args.url, options=TARGET_OPTIONS) as api:
        created = api.post("/api/run", body, force=args.force or None)
        return wait_for_exec(
            api,
            created,
            json_mode=args.json_,
            timeout_s=timeout_s,
            starting_deadline_s=deadline_s,
            max_wait_s=wait_s,
            live=not args.json_,
        )
