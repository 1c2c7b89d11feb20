"""Whose account a script runs under (SPEC §8.3): ``run_as: system`` is the agent's own;
``run_as: user`` is the named user, or the user at the console — or a skipped result
saying why not. Never silently the agent's own user instead.

Pure: the agent gathers the facts (its OS, whether it is root, who is at the console,
whether the account exists) and this module decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kanade.core import exitcodes
from kanade.core.gates import GateSkip
from kanade.core.models.wire import Command

__all__ = ["RunAsFacts", "choose_account"]


@dataclass(frozen=True)
class RunAsFacts:
    windows: bool
    agent_user: str
    agent_is_root: bool
    console_user: str | None


def choose_account(
    cmd: Command, facts: RunAsFacts, exists: Callable[[str], bool]
) -> str | GateSkip | None:
    """The account to switch to (None: stay the agent's own) or why the script cannot run.
    ``exists`` tells whether an account exists on this machine."""
    if cmd.run_as != "user":
        return None
    why = "the script was not run (it is never run as the agent's own user instead)"
    if facts.windows:
        return GateSkip(
            exitcodes.UNSUPPORTED, f"run_as: user is not supported on Windows yet; {why}"
        )
    if not facts.agent_is_root:
        return GateSkip(
            exitcodes.UNSUPPORTED,
            f"run_as: user needs an agent running as root (this one runs as "
            f"{facts.agent_user}); {why}",
        )
    name = cmd.run_as_user or facts.console_user
    if name is None:
        return GateSkip(
            exitcodes.UNSUPPORTED,
            f"run_as: user without a user name, and nobody is logged in at the console; {why}",
        )
    if not exists(name):
        return GateSkip(exitcodes.UNSUPPORTED, f"run_as: user {name!r} does not exist here; {why}")
    return name
