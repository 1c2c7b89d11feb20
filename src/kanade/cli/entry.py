"""The ``kanade`` console script: the CLI, or one line saying it needs the server extra."""

from __future__ import annotations

from collections.abc import Callable

from kanade.extras import run_with_server


def _cli() -> Callable[[], None]:
    from kanade.cli.main import main as cli_main

    return cli_main


def main() -> None:
    run_with_server("kanade", _cli)
