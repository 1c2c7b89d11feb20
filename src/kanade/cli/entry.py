"""The ``kanade`` console script: the CLI, or one line saying it needs the server extra."""

from __future__ import annotations

from kanade.extras import require_server


def main() -> None:
    require_server("kanade")
    from kanade.cli.main import main as cli_main

    cli_main()
