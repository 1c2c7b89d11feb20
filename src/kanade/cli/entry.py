"""The ``kanade`` console script: the CLI, or one line saying it needs the server extra."""

from __future__ import annotations

from collections.abc import Callable

from kanade.extras import run_with_server


def _kanade() -> None:
    from kanade.cli.fastpath import main as fast_path

    if not fast_path():  # a plain `kanade run` line ran without typer (and exited)
        from kanade.cli.main import main as cli_main

        cli_main()


def _cli() -> Callable[[], None]:
    return _kanade


def main() -> None:
    run_with_server("kanade", _cli)
