"""End to end, exactly as an operator uses it: `kanade up` in one process, the CLI in others."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from kanade.bus.broker import free_port
from stack import BIN, REPO, UpStack, start_up, stop_up


# SQLite only: `kanade up` keeps its store in its data dir (it takes no --db); its
# PostgreSQL topology, `kanade up --cluster`, is test_up_cluster.py's.
@pytest.fixture(scope="module")
def up_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    base = tmp_path_factory.mktemp("up")
    stack = start_up(base / "data", base / "up.log")
    try:
        yield stack
    finally:
        if stack.proc.poll() is None:
            stop_up(stack)


def _json_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_run_all_prints_one_line_per_agent(up_stack: UpStack) -> None:
    t0 = time.monotonic()
    res = up_stack.kanade("run", "--all", "--json", "--", "echo hi")
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    lines = _json_lines(res.stdout)
    assert sorted(str(x["pc_id"]) for x in lines) == ["local-1", "local-2", "local-3"]
    for line in lines:
        assert line == {
            "exec_id": lines[0]["exec_id"],  # every line names its exec
            "pc_id": line["pc_id"],
            "state": "finished",
            "exit_code": 0,
            "stdout": "hi\n",
            "stderr": "",
            "skipped": False,
            "note": None,
        }
    print(
        json.dumps(
            {
                "name": "e2e.run_all_3",
                "seconds": round(elapsed, 3),
                "up_ready_seconds": round(up_stack.ready_s, 3),
            }
        )
    )


def test_run_to_a_group_and_to_one_pc(up_stack: UpStack) -> None:
    res = up_stack.kanade("run", "--group", "canary", "--json", "--", "echo $((40+2))")
    assert res.returncode == 0, res.stderr
    assert [(x["pc_id"], x["stdout"]) for x in _json_lines(res.stdout)] == [("local-1", "42\n")]
    res = up_stack.kanade("run", "--pc", "local-3", "--json", "--", "echo only-3")
    assert res.returncode == 0, res.stderr
    assert [(x["pc_id"], x["stdout"]) for x in _json_lines(res.stdout)] == [("local-3", "only-3\n")]


def test_non_zero_exit_fails_the_run(up_stack: UpStack) -> None:
    res = up_stack.kanade("run", "--pc", "local-2", "--json", "--", "echo bad >&2; exit 3")
    assert res.returncode == 1
    (line,) = _json_lines(res.stdout)
    assert line["exit_code"] == 3 and line["stderr"] == "bad\n" and line["skipped"] is False


def test_timeout_kills_the_script(up_stack: UpStack) -> None:
    t0 = time.monotonic()
    res = up_stack.kanade("run", "--pc", "local-1", "--timeout", "1s", "--", "sleep 30")
    assert res.returncode == 1
    assert "exit -1" in res.stdout and "timeout after 1s" in res.stdout
    assert time.monotonic() - t0 < 20


def test_human_output_and_unreachable_backend(up_stack: UpStack) -> None:
    res = up_stack.kanade("run", "--all", "--", "echo hello-human")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("hello-human") == 3 and "exit 0" in res.stdout
    env = {**os.environ, "KANADE_URL": f"http://127.0.0.1:{free_port()}"}
    bad = subprocess.run(
        [str(BIN / "kanade"), "run", "--all", "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 1
    assert "cannot reach the kanade backend" in bad.stderr and "kanade up" in bad.stderr


def test_run_without_target_is_a_clear_error(up_stack: UpStack) -> None:
    res = up_stack.kanade("run", "--", "true")
    assert res.returncode == 1 and "--all, --group G or --pc ID" in res.stderr


def test_job_validate_names_every_bad_field(up_stack: UpStack, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: bad\nversion: '1'\nexecute:\n  shell: sh\n  script: echo\n"
        "  timeout: 10 minutes\ncolour: blue\n"
    )
    res = up_stack.kanade("job", "validate", str(bad))
    assert res.returncode == 1
    assert "execute.timeout" in res.stderr and "10 minutes" in res.stderr
    assert "colour: unknown field" in res.stderr
    good = up_stack.kanade("job", "validate", str(REPO / "examples" / "jobs" / "hello.yaml"))
    assert good.returncode == 0 and "ok" in good.stdout


def test_job_create_then_exec_and_wait(up_stack: UpStack, tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "greet.sh").write_text("echo greet-$KANADE_E2E\n")
    manifest = tmp_path / "greet.yaml"
    manifest.write_text(
        "id: greet\nversion: '2'\nexecute:\n  shell: sh\n"
        "  script_file: scripts/greet.sh\n  timeout: 20s\n"
        "  env: {KANADE_E2E: 'yes'}\n"
    )
    res = up_stack.kanade("job", "create", str(manifest))
    assert res.returncode == 0, res.stderr
    listed = up_stack.kanade("job", "list", "--json")
    assert "greet" in {j["id"] for j in _json_lines(listed.stdout)}
    res = up_stack.kanade("exec", "greet", "--group", "local", "--wait", "--json")
    assert res.returncode == 0, res.stderr
    lines = _json_lines(res.stdout)
    assert len(lines) == 3 and {x["stdout"] for x in lines} == {"greet-yes\n"}
    missing = up_stack.kanade("exec", "no-such-job", "--all")
    assert missing.returncode == 1 and "no-such-job" in missing.stderr


def test_agents_view_lists_the_local_fleet(up_stack: UpStack) -> None:
    res = up_stack.kanade("agents", "--json")
    assert res.returncode == 0
    agents = {a["pc_id"]: a for a in _json_lines(res.stdout)}
    assert set(agents) == {"local-1", "local-2", "local-3"}
    assert all(a["status"] == "alive" for a in agents.values())
    assert agents["local-1"]["groups"] == ["canary", "local"]


def test_ctrl_c_stops_everything_and_state_survives_a_restart(tmp_path: Path) -> None:
    stack = start_up(tmp_path / "data", tmp_path / "up1.log", agents=1)
    try:
        res = stack.kanade("run", "--all", "--json", "--", "echo before")
        assert res.returncode == 0, res.stderr
        exec_count = len(_json_lines(stack.kanade("executions", "--json").stdout))
    finally:
        children = stop_up(stack)
    assert stack.proc.returncode == 0
    assert len(children) >= 3  # broker, backend, agent
    assert not [
        p
        for p in children
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]
    again = start_up(tmp_path / "data", tmp_path / "up2.log", agents=1)
    try:
        listed = _json_lines(again.kanade("executions", "--json").stdout)
        assert len(listed) == exec_count
        with httpx.Client(base_url=again.url) as http:
            assert "hello" in {j["id"] for j in http.get("/api/jobs").json()["items"]}
        res = again.kanade("run", "--all", "--json", "--", "echo after")
        assert res.returncode == 0, res.stderr
    finally:
        stop_up(again)
