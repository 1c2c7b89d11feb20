"""``kanade executions show EXEC --script`` (issue #18 item 4): the script an execution runs,
on stdout, for operators; a viewer is told it needs role operator. A backend process with
auth jwt, the CLI as a process; no agent needed (the exec waits for an offline pc)."""

from __future__ import annotations

import json

import pytest
from cli_runs import kanade
from rollout_stack import Stack

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

SCRIPT = "echo 'a line with $HOME and \"quotes\"'\nexit 3\n"


def test_executions_show_script_by_role(stack: Stack) -> None:
    stack.add_user("ops", "operator")
    stack.add_user("view", "viewer")
    b = stack.backend(jwt=True)
    ops, view = b.login("ops"), b.login("view")
    body = {"script": SCRIPT, "shell": "bash", "target": {"pcs": ["far-away"]}}
    created = b.post_ok("/api/run?force=true", body, ops)  # force: far-away never reports
    exec_id = created["exec_id"]

    as_ops = {"KANADE_TOKEN": ops}
    shown = kanade(b.url, "executions", "show", exec_id, "--script", env=as_ops)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == SCRIPT  # exactly the text: pipe it to a file or a diff
    assert "bash script (inline), sha256 " in shown.stderr

    as_json = kanade(b.url, "executions", "show", exec_id, "--script", "--json", env=as_ops)
    got = json.loads(as_json.stdout)
    assert got["text"] == SCRIPT and got["source"] == "inline"

    refused = kanade(b.url, "executions", "show", exec_id, "--script", env={"KANADE_TOKEN": view})
    assert refused.returncode != 0 and refused.stdout == ""
    assert "operator" in refused.stderr, refused.stderr
    # Without --script a viewer still sees the execution.
    plain = kanade(b.url, "executions", "show", exec_id, env={"KANADE_TOKEN": view})
    assert plain.returncode == 0 and f"exec {exec_id}" in plain.stdout
