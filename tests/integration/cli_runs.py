"""The ``kanade`` CLI as tests drive it against a backend process (rollout_stack.Backend):
one-shot runs, and :class:`Streamed` — a run whose stdout and stderr are pipes (not a
terminal), read while it is still running, so a test can see what it printed and when."""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from typing import Any

import pytest
from rollout_stack import BIN, Backend


def kanade(url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kanade"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=cli_env(url),
    )


def cli_env(url: str) -> dict[str, str]:
    # The URL from the environment: an argument after `--` would be part of the script.
    return {**os.environ, "KANADE_TOKEN": "", "KANADE_URL": url}


def status(b: Backend, pc_id: str) -> str:
    return str(b.get(f"/api/agents/{pc_id}")["status"])


def exec_view(b: Backend, exec_id: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    ex = b.get(f"/api/executions/{exec_id}")
    return ex, {r["pc_id"]: r for r in ex["results"]}


def ended(b: Backend, exec_id: str, want: str = "completed") -> dict[str, Any] | None:
    ex = b.get(f"/api/executions/{exec_id}")
    open_rows = [r for r in ex["results"] if r["state"] in ("pending", "in_flight")]
    return ex if ex["status"] == want and not open_rows else None


def exec_id_of(b: Backend, before: set[str]) -> str | None:
    items = b.get("/api/executions", limit=20)["items"]
    fresh = [e["exec_id"] for e in items if e["exec_id"] not in before]
    return fresh[0] if fresh else None


class Streamed:
    """A CLI process whose stdout and stderr are pipes (not a terminal), read as it runs."""

    def __init__(self, url: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "kanade"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(url),
        )
        self.out = ""
        self.err = ""
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        os.set_blocking(self.proc.stderr.fileno(), False)
        self._sel.register(self.proc.stdout, selectors.EVENT_READ, "out")
        self._sel.register(self.proc.stderr, selectors.EVENT_READ, "err")

    def read(self, wait: float = 0.05) -> None:
        for key, _ in self._sel.select(wait):
            data = key.fileobj.read()  # type: ignore[union-attr]
            if data:
                text = data.decode(errors="replace")
                if key.data == "out":
                    self.out += text
                else:
                    self.err += text

    def wait(self, timeout: float) -> int:
        give_up = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < give_up:
            self.read()
        if self.proc.poll() is None:
            self.proc.kill()
            pytest.fail(f"kanade did not end within {timeout}s\n{self.out}\n{self.err}")
        self.read(0)
        self.read(0)
        return int(self.proc.returncode)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._sel.close()
