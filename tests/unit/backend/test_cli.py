"""kanade-backend's command line loads the app (FastAPI, every route and service: most of a
start) only to run it: ``user add`` — how every deployment, ``kanade up`` and many tests
bootstrap users — and an option refused before the start never pay for it."""

from __future__ import annotations

import json
import subprocess
import sys

# Checked in a fresh interpreter: sys.modules is per process.
PROBE = """
import json, sys
import kanade.backend.cli
heavy = ("fastapi", "uvicorn", "kanade.backend.app")
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def test_the_app_is_not_loaded_to_parse_a_command() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    assert json.loads(out.stdout) == [], out.stdout
