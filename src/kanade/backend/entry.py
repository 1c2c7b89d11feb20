"""The ``kanade-backend`` console script: the backend, or one line saying it needs the server
extra."""

from __future__ import annotations

from kanade.extras import require_server


def main() -> None:
    require_server("kanade-backend")
    from kanade.backend.cli import main as backend_main

    backend_main()
