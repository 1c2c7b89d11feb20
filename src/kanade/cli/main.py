"""``kanade``: the operator CLI — the root app and the one list of its verbs and nouns.

Each verb lives in the module of its noun (:mod:`kanade.cli.commands`); this module only
registers them, in the order ``kanade --help`` lists them. Conventions for every verb:
rich tables for people, ``--json`` (one object per line) for scripts, a live progress
display for anything that waits, a non-zero exit on failure, and errors in one line that
say what to do.
"""

from __future__ import annotations

import typer

from kanade.cli.commands import (
    admin,
    agent,
    bench,
    config,
    fleet,
    freeze,
    group,
    jetstream,
    job,
    keys,
    notify,
    retention,
    rollout,
    schedule,
    script,
    up,
)
from kanade.cli.commands import exec as execs

HELP = (
    "kanade: run scripts on fleets of machines and know what happened on each.\n\n"
    "Examples:\n\n"
    "  kanade up --agents 3\n\n"
    "  kanade run --all -- 'uname -a'\n\n"
    "  kanade job create examples/jobs/disk-usage.yaml\n\n"
    "  kanade exec disk-usage --group web --wait"
)


def build_app() -> typer.Typer:
    """The whole CLI. Verbs first, then nouns with sub-commands: help lists them so."""
    app = typer.Typer(add_completion=True, no_args_is_help=True, rich_markup_mode=None,
                      help=HELP)
    # verbs
    app.command("run")(execs.run)
    app.command("exec")(execs.exec_)
    app.command("up")(up.up)
    app.command("revoke")(job.revoke)
    app.command("unrevoke")(job.unrevoke)
    app.command("revocations")(job.revocations)
    app.command("kill")(execs.kill)
    app.command("ping")(fleet.ping)
    app.command("login")(admin.login)
    app.command("logout")(admin.logout)
    app.command("whoami")(admin.whoami)
    app.command("audit")(admin.audit)
    app.command("inventory")(fleet.inventory)
    app.command("checks")(fleet.checks)
    app.command("approve")(rollout.approve)
    app.command("reject")(rollout.reject)
    app.command("approvals")(rollout.approvals_list)
    app.command("retention")(retention.retention)
    # nouns
    app.add_typer(job.app, name="job")
    app.add_typer(fleet.agents_app, name="agents")
    app.add_typer(agent.app, name="agent")
    app.add_typer(execs.executions_app, name="executions")
    app.add_typer(config.app, name="config")
    app.add_typer(group.app, name="group")
    app.add_typer(execs.results_app, name="results")
    app.add_typer(freeze.app, name="freeze")
    app.add_typer(admin.user_app, name="user")
    app.add_typer(schedule.app, name="schedule")
    app.add_typer(script.app, name="script")
    app.add_typer(bench.app, name="bench")
    app.add_typer(jetstream.app, name="jetstream")
    app.add_typer(rollout.app, name="rollout")
    app.add_typer(keys.app, name="keys")
    app.add_typer(notify.app, name="notify")
    return app


def main() -> None:
    build_app()(prog_name="kanade")


if __name__ == "__main__":
    main()
