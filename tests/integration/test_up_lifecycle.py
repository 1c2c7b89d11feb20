"""``kanade up`` supervises its children as an operator expects (issue #18, item 9).

* a second ``kanade up`` on the same data dir is refused (it would share the JetStream
  store and the SQLite file) with a message naming the holder;
* a dead ``nats-server`` is noticed, reported and restarted; the backend links again;
* ``kill -9`` of the supervisor takes broker, backend and agents with it (Linux).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from polling import wait_until
from stack import BIN, UpStack, start_up, stop_up

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process semantics")


# SQLite only: `kanade up` keeps its store in its data dir (it takes no --db); its
# PostgreSQL topology, `kanade up --cluster`, is test_up_cluster.py's.
@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpStack]:
    stack = start_up(tmp_path / "data", tmp_path / "up.log", agents=1, examples=False)
    try:
        yield stack
    finally:
        stop_up(stack)


def _children(stack: UpStack) -> list[psutil.Process]:
    return psutil.Process(stack.proc.pid).children(recursive=True)


def _broker(stack: UpStack) -> psutil.Process | None:
    return next((p for p in _children(stack) if p.name().startswith("nats-server")), None)


def _broker_linked(stack: UpStack) -> bool:
    try:
        return bool(httpx.get(f"{stack.url}/health", timeout=2).json().get("broker"))
    except httpx.HTTPError:
        return False


def test_a_second_up_on_the_same_data_dir_is_refused(up: UpStack) -> None:
    second = subprocess.run(
        [str(BIN / "kanade"), "up", "--agents", "0", "--data-dir", str(up.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode != 0
    assert f"another kanade up (pid {up.proc.pid}) is using" in second.stderr, second.stderr
    assert up.proc.poll() is None and _broker_linked(up)  # the first one is untouched


def test_a_dead_broker_is_noticed_and_restarted(up: UpStack) -> None:
    dead = _broker(up)
    assert dead is not None
    dead.kill()
    dead.wait(10)
    wait_until(
        lambda: "the broker (nats-server) exited; restarting it" in up.log.read_text(),
        "the supervisor reports the dead broker",
        timeout=10,
        diagnostics=up.log.read_text,
    )
    wait_until(
        lambda: (b := _broker(up)) is not None and b.pid != dead.pid, "a new broker", timeout=20
    )
    wait_until(
        lambda: _broker_linked(up), "the backend links again", timeout=30,
        diagnostics=up.log.read_text,
    )  # fmt: skip
    ran = up.kanade("run", "--all", "--json", "--", "echo after-restart")
    assert ran.returncode == 0 and "after-restart" in ran.stdout, ran.stdout + ran.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_kill_9_of_up_takes_its_children_along(tmp_path: Path) -> None:
    stack = start_up(tmp_path / "data", tmp_path / "up.log", agents=1, examples=False)
    children = _children(stack)
    try:
        names = sorted(p.name() for p in children)
        assert any(n.startswith("nats-server") for n in names), names
        assert len(children) >= 3, names  # broker, backend, one agent
        stack.proc.send_signal(signal.SIGKILL)
        stack.proc.wait(10)
        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, [(p.pid, p.name()) for p in alive]
    finally:
        for p in children:
            if p.is_running():
                p.kill()
