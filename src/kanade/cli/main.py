"""``kanade``: the operator CLI — the root app and the one list of its verbs and nouns.

Each verb lives in the module of its noun (:mod:`kanade.cli.commands`); this module only
registers them, in the order ``kanade --help`` lists them. Conventions for every verb:
rich tables for people, ``--json`` (one object per line) for scripts, a live progress
display for anything that waits, a non-zero exit on failure, and errors in one line that
say what to do (one JSON object under ``--json``).

Start-up: :func:`main` imports only the module of the verb or noun on the command line
(help and shell completion still build the whole app), so ``kanade run`` does not pay
for importing every other verb (docs/performance.md, "CLI start-up").
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import typer

HELP = (
    "kanade: run scripts on fleets of machines and know what happened on each.\n\n"
    "Examples:\n\n"
    "  kanade up --agents 3\n\n"
    "  kanade run --all -- 'uname -a'\n\n"
    "  kanade job create examples/jobs/disk-usage.yaml\n\n"
    "  kanade exec disk-usage --group web --wait"
)

# name → (module under kanade.cli.commands, attribute), in help order: verbs, then nouns.
VERBS: dict[str, tuple[str, str]] = {
    "run": ("exec", "run"),
    "exec": ("exec", "exec_"),
    "up": ("up", "up"),
    "revoke": ("job", "revoke"),
    "unrevoke": ("job", "unrevoke"),
    "revocations": ("job", "revocations"),
    "kill": ("exec", "kill"),
    "ping": ("fleet", "ping"),
    "login": ("admin", "login"),
    "logout": ("admin", "logout"),
    "whoami": ("admin", "whoami"),
    "audit": ("admin", "audit"),
    "inventory": ("fleet", "inventory"),
    "checks": ("fleet", "checks"),
    "approve": ("rollout", "approve"),
    "reject": ("rollout", "reject"),
    "approvals": ("rollout", "approvals_list"),
    "retention": ("retention", "retention"),
}
NOUNS: dict[str, tuple[str, str]] = {
    "job": ("job", "app"),
    "agents": ("fleet", "agents_app"),
    "agent": ("agent", "app"),
    "executions": ("exec", "executions_app"),
    "config": ("config", "app"),
    "group": ("group", "app"),
    "results": ("exec", "results_app"),
    "freeze": ("freeze", "app"),
    "user": ("admin", "user_app"),
    "schedule": ("schedule", "app"),
    "script": ("script", "app"),
    "bench": ("bench", "app"),
    "jetstream": ("jetstream", "app"),
    "rollout": ("rollout", "app"),
    "keys": ("keys", "app"),
    "notify": ("notify", "app"),
}


def _load(where: tuple[str, str]) -> Any:
    module, attr = where
    return getattr(importlib.import_module(f"kanade.cli.commands.{module}"), attr)


def build_app(only: str | None = None) -> typer.Typer:
    """The whole CLI (verbs first, then nouns with sub-commands: help lists them so), or
    only the verb or noun ``only`` — what one command line needs."""
    app = typer.Typer(add_completion=True, no_args_is_help=True, rich_markup_mode=None,
                      help=HELP)

    @app.callback()
    def _root() -> None:
        # A group even when only one command is registered: `kanade run …` keeps its name.
        pass

    for name, where in VERBS.items():
        if only is None or only == name:
            app.command(name)(_load(where))
    for name, where in NOUNS.items():
        if only is None or only == name:
            app.add_typer(_load(where), name=name)
    return app


def _command_name(args: list[str]) -> str | None:
    """The verb or noun a command line runs (its first word that is not an option)."""
    return next((a for a in args if not a.startswith("-")), None)


def main() -> None:
    from kanade.cli import output

    args = sys.argv[1:]
    head = args[: args.index("--")] if "--" in args else args
    output.JSON_ERRORS = "--json" in head
    name = _command_name(head)
    completing = "_KANADE_COMPLETE" in os.environ
    known = name in VERBS or name in NOUNS
    app = build_app(name if known and not completing else None)
    command = typer.main.get_command(app)
    from typer._click.exceptions import ClickException

    from kanade.cli.lean import install

    install()

    try:
        code = command.main(args=args, prog_name="kanade", standalone_mode=False)
    except ClickException as exc:  # a usage error: exit 2, in JSON under --json
        if output.JSON_ERRORS:
            output.json_line({"error": exc.format_message(), "exit_code": exc.exit_code})
        else:
            exc.show()
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("Aborted!", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
