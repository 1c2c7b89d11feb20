"""Option values converted without pydantic (start-up time): the same values and clear
errors naming the option, for every plain type; choices still go through typer."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Annotated, Literal

import pytest
import typer
import typer.main
from typer._click.exceptions import BadParameter, UsageError

from kanade.cli.lean import install

install()

seen: dict[str, object] = {}
app = typer.Typer()


@app.callback()
def _root() -> None:
    pass


@app.command()
def cmd(
    words: Annotated[list[str], typer.Argument()],
    n: Annotated[int, typer.Option("-n", min=1, max=5)] = 2,
    rate: Annotated[float | None, typer.Option("--rate")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag")] = None,
    flag: Annotated[bool, typer.Option("--flag")] = False,
    mode: Annotated[Literal["a", "b"], typer.Option("--mode")] = "a",
) -> None:
    seen.update(words=words, n=n, rate=rate, tag=tag, flag=flag, mode=mode)


def run(*args: str) -> dict[str, object]:
    seen.clear()
    typer.main.get_command(app).main(["cmd", *args], standalone_mode=False)
    return dict(seen)


def test_plain_values_are_converted_as_typer_would() -> None:
    got = run("x", "y", "-n", "3", "--rate", "0.5", "--tag", "a", "--tag", "b", "--flag")
    assert got == {"words": ["x", "y"], "n": 3, "rate": 0.5, "tag": ["a", "b"], "flag": True,
                   "mode": "a"}  # fmt: skip
    assert run("x")["tag"] is None and run("x")["rate"] is None


def test_bad_values_are_refused_naming_the_option() -> None:
    with pytest.raises(BadParameter, match="'x' is not an integer"):
        run("w", "-n", "x")
    with pytest.raises(BadParameter, match="'9' is not in 1 <= x <= 5"):
        run("w", "-n", "9")
    with pytest.raises(UsageError, match="'c'"):  # a choice: typer's own check
        run("w", "--mode", "c")


def test_kanade_run_starts_without_pydantic_rich_or_httpx() -> None:
    probe = (
        "import json, sys\n"
        "sys.argv = ['kanade', 'run', '--all', '--json', '--url', 'http://127.0.0.1:9', '--',"
        " 'echo hi']\n"
        "from kanade.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in ('pydantic', 'rich', 'httpx') if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    *error, heavy = done.stdout.splitlines()
    assert "cannot reach the kanade backend" in json.loads(error[0])["error"]
    assert json.loads(heavy) == []
