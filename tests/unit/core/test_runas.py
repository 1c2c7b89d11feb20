"""run_as: the named or console user, or a skipped result saying why — never silently the
agent's own user (SPEC §8.3)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from kanade.core import exitcodes
from kanade.core.gates import GateSkip
from kanade.core.models.job import JobManifest
from kanade.core.models.wire import Command
from kanade.core.runas import RunAsFacts, choose_account

ROOT = RunAsFacts(windows=False, agent_user="root", agent_is_root=True, console_user="alice")


def command(**extra: object) -> Command:
    return Command.model_validate(
        {"request_id": "r", "exec_id": "e", "job_id": "j", "version": "1", "script": "true",
         "timeout_s": 5, "issued_at": datetime(2026, 1, 1, tzinfo=UTC), **extra}
    )


def known(*names: str):  # type: ignore[no-untyped-def]
    return lambda name: name in names


def test_system_stays_the_agents_own_user() -> None:
    assert choose_account(command(), ROOT, known()) is None


def test_named_user_wins_over_the_console_user() -> None:
    cmd = command(run_as="user", run_as_user="bob")
    assert choose_account(cmd, ROOT, known("bob", "alice")) == "bob"
    assert choose_account(command(run_as="user"), ROOT, known("alice")) == "alice"


@pytest.mark.parametrize(
    "facts,cmd,why",
    [
        (RunAsFacts(True, "SYSTEM", False, None), command(run_as="user"), "Windows"),
        (RunAsFacts(False, "kanade", False, "alice"), command(run_as="user"), "runs as kanade"),
        (RunAsFacts(False, "root", True, None), command(run_as="user"), "nobody is logged in"),
        (ROOT, command(run_as="user", run_as_user="ghost"), "'ghost' does not exist"),
    ],
)
def test_otherwise_a_skipped_result_says_why(facts: RunAsFacts, cmd: Command, why: str) -> None:
    skip = choose_account(cmd, facts, known("alice"))
    assert isinstance(skip, GateSkip) and skip.exit_code == exitcodes.UNSUPPORTED
    assert why in skip.reason and "never run as the agent's own user" in skip.reason


def _job(**execute: object) -> dict[str, object]:
    return {"id": "j", "version": "1",
            "execute": {"shell": "sh", "script": "id -un", "timeout": "5s", **execute}}


def test_manifest_user_field_is_validated_with_its_path() -> None:
    assert JobManifest.model_validate(_job(run_as="user", user="nobody")).execute.user == "nobody"
    with pytest.raises(ValidationError, match="only allowed with run_as: user"):
        JobManifest.model_validate(_job(user="nobody"))
    with pytest.raises(ValidationError, match=r"execute\.user"):
        JobManifest.model_validate(_job(run_as="user", user="bad name;rm"))
