"""The ``kanade-backend`` console script: the backend, or one line saying it needs the server
extra."""

from __future__ import annotations

from collections.abc import Callable

from kanade.extras import run_with_server


def _backend() -> Callable[[], None]:
    from kanade.backend.cli import main as backend_main

    return backend_main


def main() -> None:
    run_with_server("kanade-backend", _backend)
