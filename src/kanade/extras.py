"""Which optional part of the install a program needs, said in one line instead of a traceback.

The base install is the agent's (docs/deploy.md): a managed machine gets ``kanade-agent`` and
nothing it does not need. ``kanade`` (the operator CLI) and ``kanade-backend`` need the
``server`` extra; their entry points run through :func:`run_with_server`, which looks for
the extra only once an import failed — looking first cost every ``kanade`` command about
5 ms of path searches (docs/performance.md, "CLI start-up").
"""

from __future__ import annotations

import sys
from collections.abc import Callable

# One module per distribution of the `server` extra that these programs import at start.
SERVER_MODULES = ("typer", "rich", "fastapi", "sqlalchemy", "structlog", "cryptography")


def _absent(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is None
    except ImportError:
        return True


def missing_server_modules() -> list[str]:
    return [m for m in SERVER_MODULES if _absent(m)]


def require_server(program: str) -> None:
    """Exit 2 with what to install when the ``server`` extra is absent."""
    missing = missing_server_modules()
    if missing:
        print(
            f"{program}: this is an agent-only install (missing: {', '.join(missing)}); "
            f"{program} needs the server extra: pip install 'kanade[server]'",
            file=sys.stderr,
        )
        sys.exit(2)


def run_with_server(program: str, main: Callable[[], Callable[[], None]]) -> None:
    """Import the program (``main`` returns its entry function) and run it; a module that
    cannot be found because the ``server`` extra is absent ends it with
    :func:`require_server`'s one line, at start or later (a verb's lazy import)."""
    try:
        main()()
    except ModuleNotFoundError:
        require_server(program)  # exits when the extra is what is missing
        raise
