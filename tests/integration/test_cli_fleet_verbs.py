"""`kanade agents list|show` and `kanade jetstream setup|status` against a real `kanade up`."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator

import pytest

from kanade.bus.broker import free_port
from stack import BIN, UpStack, start_up, stop_up


# SQLite only: `kanade up` keeps its store in its data dir (it takes no --db); its
# PostgreSQL topology, `kanade up --cluster`, is test_up_cluster.py's.
@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    base = tmp_path_factory.mktemp("fleetverbs")
    up = start_up(base / "data", base / "up.log", agents=2)
    try:
        yield up
    finally:
        stop_up(up)


def _nats_url(stack: UpStack) -> str:
    match = re.search(r"broker\s*:\s*(tls://\S+)", stack.log.read_text())
    assert match, stack.log.read_text()
    return match.group(1)


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def test_agents_list_filters_and_show(stack: UpStack) -> None:
    res = stack.kanade("agents", "list", "--group", "canary", "--json")
    assert res.returncode == 0, res.stderr
    assert [a["pc_id"] for a in _lines(res.stdout)] == ["local-1"]
    assert stack.kanade("agents", "--json").stdout.count("\n") == 2

    res = stack.kanade("run", "--pc", "local-2", "--json", "--", "echo shown")
    assert res.returncode == 0, res.stderr
    res = stack.kanade("agents", "show", "local-2", "--json")
    assert res.returncode == 0, res.stderr
    (detail,) = _lines(res.stdout)
    assert detail["pc_id"] == "local-2" and detail["status"] == "alive"
    assert detail["config"]["values"]["heartbeat_interval"] > 0
    assert any(r["stdout"] == "shown\n" for r in detail["recent_results"])  # type: ignore[index]
    human = stack.kanade("agents", "show", "local-2")
    assert human.returncode == 0 and "effective config" in human.stdout
    missing = stack.kanade("agents", "show", "nobody")
    assert missing.returncode == 1 and "nobody" in missing.stderr


def test_jetstream_setup_and_status(stack: UpStack) -> None:
    security = stack.data_dir / "security"  # where `kanade up` keeps the trust root
    env = {
        **os.environ,
        "KANADE_NATS_URL": _nats_url(stack),
        "KANADE_NATS_CREDS": str(security / "operator.creds"),
        "KANADE_NATS_CA": str(security / "ca.pem"),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "kanade"), "jetstream", *args], capture_output=True,
                              text=True, env=env, timeout=60, check=False)

    assert run("setup").returncode == 0
    res = run("status", "--json")
    assert res.returncode == 0, res.stderr
    streams = {s["stream"]: s for s in _lines(res.stdout)}
    assert streams["KANADE_COMMANDS"]["consumers"] == 2  # one per connected agent
    assert {"KANADE_RESULTS", "KV_kanade_jobs", "OBJ_kanade_outputs"} <= set(streams)
    env["KANADE_NATS_URL"] = f"tls://127.0.0.1:{free_port()}"
    down = run("status")
    assert down.returncode == 1 and "broker running" in down.stderr


