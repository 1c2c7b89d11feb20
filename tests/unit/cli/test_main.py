"""The root app: every verb and noun registered once, in the order help lists them."""

from __future__ import annotations

import typer.core
import typer.main

from kanade.cli.main import build_app

VERBS = ["run", "exec", "up", "revoke", "unrevoke", "revocations", "kill", "ping", "login",
         "logout", "whoami", "audit", "inventory", "checks", "approve", "reject", "approvals",
         "retention"]
NOUNS = {
    "job": ["validate", "create", "list", "show", "delete", "approve-unattended"],
    "agents": ["list", "show"],
    "agent": ["enroll-token", "tokens", "cancel-token", "enrolled", "revoke", "build", "publish",
              "rollout", "current"],
    "executions": ["show", "watch", "tail"],
    "config": ["get", "set", "unset", "effective"],
    "group": ["add", "rm", "set", "list"],
    "results": ["output"],
    "freeze": ["set", "clear", "status"],
    "user": ["list", "add", "rm", "logout"],
    "schedule": ["validate", "create", "list", "show", "preview", "enable", "disable",
                 "delete"],
    "script": ["upload", "show"],
    "bench": ["fanout", "run-latency", "ingest", "footprint", "throughput", "scheduler", "tick",
              "retention"],
    "jetstream": ["setup", "status", "migrate"],
    "rollout": ["list", "show", "resume", "abort"],
    "keys": ["init", "show", "rotate"],
    "notify": ["add", "list", "show", "set", "enable", "disable", "rm", "test", "deliveries",
               "retry"],
}


def test_build_app_registers_verbs_then_nouns_in_help_order() -> None:
    root = typer.main.get_command(build_app())
    assert isinstance(root, typer.core.TyperGroup)
    commands = root.commands
    assert list(commands) == [*VERBS, *NOUNS]
    for noun, subcommands in NOUNS.items():
        group = commands[noun]
        assert isinstance(group, typer.core.TyperGroup)
        assert list(group.commands) == subcommands, noun


def test_each_build_is_a_fresh_app() -> None:
    assert build_app() is not build_app()
