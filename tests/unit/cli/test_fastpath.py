"""The ``kanade run`` fast path reads a command line exactly as typer's ``kanade run`` does,
or leaves it to typer — and a plain ``kanade run`` never imports typer."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as st
from typer._click.exceptions import ClickException

import kanade.cli.commands.exec as exec_commands
from kanade.cli.adhoc import RunArgs
from kanade.cli.fastpath import OPTIONS, parse_run
from kanade.cli.lean import install
from kanade.cli.main import build_app

install()
COMMAND = typer.main.get_command(build_app("run"))

WORDS = st.sampled_from(["echo", "hi", "web", "db", "30s", "1m", "-5s", "-", "a b", "x=y", ""])
OPTION_NAMES = [*sorted(OPTIONS), "--help", "--no-all", "--al", "-x", "-gweb", "--verbose"]


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    """`run` then tokens: options (``--opt value``, ``--opt=value``, flags with or without a
    value), words, sometimes ``--`` followed by anything."""
    out = ["run"]
    for _ in range(draw(st.integers(0, 7))):
        if draw(st.booleans()):
            out.append(draw(WORDS))
            continue
        name = draw(st.sampled_from(OPTION_NAMES))
        if draw(st.integers(0, 3)) == 0:
            out.append(f"{name}={draw(WORDS)}")
        else:
            out.append(name)
            if draw(st.booleans()):
                out.append(draw(WORDS))
    if draw(st.booleans()):
        out.append("--")
        out.extend(draw(st.lists(st.sampled_from(["echo", "--all", "--", "-g", "hi"]),
                                 max_size=3)))  # fmt: skip
    return out


def typer_reads(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> RunArgs | None:
    """What typer's ``kanade run`` passes to run_adhoc for ``argv`` (None: a usage error)."""
    seen: list[RunArgs] = []

    def capture(args: RunArgs) -> bool:
        seen.append(args)
        return True

    monkeypatch.setattr(exec_commands, "run_adhoc", capture)
    try:
        COMMAND.main(args=argv, prog_name="kanade", standalone_mode=False)
    except ClickException:
        return None
    return seen[0] if seen else None


@settings(max_examples=300, deadline=None)
@given(argv=command_lines())
def test_a_line_the_fast_path_reads_means_the_same_to_typer(argv: list[str]) -> None:
    fast = parse_run(argv)
    if fast is None:
        return  # typer reads it, as always
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("KANADE_URL", raising=False)
        assert typer_reads(argv, monkeypatch) == fast, argv


def test_plain_lines_are_read_and_the_rest_left_to_typer() -> None:
    args = parse_run(["run", "-g", "web", "--pc=pc1", "--json", "--timeout", "5s",
                      "--", "df", "-h"])  # fmt: skip
    assert args == RunArgs(script=("df", "-h"), groups=("web",), pcs=("pc1",), json_=True,
                           timeout="5s")  # fmt: skip
    for argv in (["run", "--help"], ["run", "--all"], ["run", "--all", "--shell"],
                 ["run", "--no-all", "--", "x"], ["run", "--json=1", "--", "x"],
                 ["exec", "job", "--all"], []):  # fmt: skip
        assert parse_run(argv) is None, argv


def _probe(*argv: str, env: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    code = (
        "import json, sys\n"
        f"sys.argv = ['kanade', *{list(argv)!r}]\n"
        "from kanade.cli.entry import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    print('exit', exc.code)\n"
        "print(json.dumps(sorted(m for m in ('typer', 'pydantic', 'rich', 'httpx')"
        " if m in sys.modules)))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False, env=env)  # fmt: skip


def test_a_plain_kanade_run_never_imports_typer() -> None:
    done = _probe("run", "--all", "--json", "--url", "http://127.0.0.1:9", "--", "echo hi")
    *error, code, heavy = done.stdout.splitlines()
    assert "cannot reach the kanade backend" in json.loads(error[0])["error"]
    assert code == "exit 1" and json.loads(heavy) == []
    # Help (and anything the fast path does not read) is typer's.
    helped = _probe("run", "--help")
    assert "--starting-deadline" in helped.stdout and '"typer"' in helped.stdout.splitlines()[-1]
