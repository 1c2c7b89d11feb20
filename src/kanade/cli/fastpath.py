"""``kanade run`` without importing typer: the start-up fast path.

Importing typer (and the click it carries) is over half of a ``kanade run`` process's own
time — more than the round trip to 25 agents it waits for (docs/performance.md, "CLI
start-up"). Most ``kanade run`` lines are plain: a target, a few options, the script after
``--``. :func:`parse_run` reads exactly those and hands them to the same body typer's
command calls (:func:`kanade.cli.adhoc.run_adhoc`); for anything else — ``--help``, shell
completion, an option it does not know, a malformed line — it answers None and typer parses
the line as always, so help, completion and every usage error stay typer's own.

The options are :data:`OPTIONS`, checked against the typer command's by a test that parses
generated command lines both ways and requires the same result
(``tests/unit/cli/test_fastpath.py``).
"""

from __future__ import annotations

import sys
from typing import Any, Final, Literal

from kanade.cli.adhoc import RunArgs

Kind = Literal["flag", "value", "values"]

OPTIONS: Final[dict[str, tuple[str, Kind]]] = {
    "--all": ("all_", "flag"),
    "--force": ("force", "flag"),
    "--json": ("json_", "flag"),
    "--group": ("groups", "values"),
    "-g": ("groups", "values"),
    "--pc": ("pcs", "values"),
    "-p": ("pcs", "values"),
    "--shell": ("shell", "value"),
    "--timeout": ("timeout", "value"),
    "--starting-deadline": ("starting_deadline", "value"),
    "--max-wait": ("max_wait", "value"),
    "--url": ("url", "value"),
}
"""Every option of ``kanade run``: the RunArgs field it sets and how."""


def parse_run(argv: list[str]) -> RunArgs | None:
    """The ``kanade run`` line ``argv`` (without the program name), or None when typer
    must read it. Follows click's rules for what it accepts: options anywhere before
    ``--`` (``--opt value`` or ``--opt=value``), the last of a repeated single-value option
    wins, everything after ``--`` is the script."""
    if not argv or argv[0] != "run":
        return None
    fields: dict[str, Any] = {}
    script: list[str] = []
    groups: list[str] = []
    pcs: list[str] = []
    rest = iter(argv[1:])
    for arg in rest:
        if arg == "--":
            script.extend(rest)
            break
        if not arg.startswith("-") or arg == "-":
            script.append(arg)
            continue
        # --opt=value; a short option's "=" is part of its value (-g=web: "=web"): typer's.
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        spec = OPTIONS.get(name)
        if spec is None:
            return None  # --help, --no-…, -gX, a typo: typer's to answer
        key, kind = spec
        if kind == "flag":
            if eq:
                return None
            fields[key] = True
            continue
        value = inline if eq else next(rest, None)
        if value is None or (not eq and value.startswith("-")):
            return None  # a missing value: typer says so
        if kind == "values":
            (groups if key == "groups" else pcs).append(value)
        else:
            fields[key] = value
    if not script:
        return None  # typer: "Missing argument 'SCRIPT...'"
    return RunArgs(script=tuple(script), groups=tuple(groups), pcs=tuple(pcs), **fields)


def run(args: RunArgs) -> int:
    """Run ``args`` as typer's ``kanade run`` does (:func:`kanade.cli.common.guard`):
    the exit code; an error is one line, or one JSON object under ``--json``."""
    from kanade.cli import output
    from kanade.cli.adhoc import run_adhoc
    from kanade.cli.client import CliError

    output.JSON_ERRORS = args.json_
    try:
        return 0 if run_adhoc(args) else 1
    except CliError as exc:
        output.fail(exc.message, exc.details, as_json=exc.to_dict())
        return exc.code


def main(argv: list[str] | None = None) -> bool:
    """Run ``kanade run`` here when the line is one :func:`parse_run` reads (exits the
    process); False: typer's turn."""
    import os

    if "_KANADE_COMPLETE" in os.environ:  # shell completion asks typer
        return False
    args = parse_run(sys.argv[1:] if argv is None else argv)
    if args is None:
        return False
    sys.exit(run(args))
