"""The rough edges a new operator hit (issue 18 items 6, 7, 8), through the real ``kanade``
CLI against one ``kanade up`` stack (3 agents; local-1 in ``canary``; all in ``local``).

The stack is started outside the checkout and without ``--examples``: the example jobs
it loads are the ones shipped in the package.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_runs import Streamed

from polling import wait_until
from stack import BIN, UpStack, start_up, stop_up


# SQLite only: `kanade up` keeps its store in its data dir (it takes no --db); its
# PostgreSQL topology, `kanade up --cluster`, is test_up_cluster.py's.
@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    base = tmp_path_factory.mktemp("cliedges")
    stack = start_up(base / "data", base / "up.log", agents=3, examples=False, cwd=base)
    try:
        yield stack
    finally:
        stop_up(stack)


def env(up: UpStack) -> dict[str, str]:
    # Piped, as a script runs it: no $COLUMNS to hide an 80-column wrap.
    out = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return {**out, "KANADE_URL": up.url, "KANADE_TOKEN": ""}


def kanade(up: UpStack, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "kanade"), *args], capture_output=True, text=True,
                          env=env(up), timeout=timeout, check=False)  # fmt: skip


def api(up: UpStack, path: str, **params: Any) -> Any:
    with httpx.Client(base_url=up.url, timeout=15) as http:
        r = http.get(path, params=params)
        r.raise_for_status()
        return r.json()


def exec_ids(up: UpStack) -> set[str]:
    return {e["exec_id"] for e in api(up, "/api/executions", limit=1000)["items"]}


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in out.splitlines() if x.strip()]


# --- item 8: example jobs ship with the package ----------------------------------------------
def test_kanade_up_outside_the_checkout_loads_the_packaged_example_jobs(up: UpStack) -> None:
    # The ready block is written line by line after "kanade is up": wait for its line.
    wait_until(lambda: "example jobs    : disk-usage, hello, uptime-check" in up.log.read_text(),
               "the example jobs line of kanade up's ready block", timeout=15)  # fmt: skip
    jobs = {j["id"] for j in lines(kanade(up, "job", "list", "--json").stdout)}
    assert {"disk-usage", "hello", "uptime-check"} <= jobs


# --- item 6: typos are refused with close matches unless --force -----------------------------
def test_unknown_names_are_refused_with_close_matches_and_leave_nothing_behind(
    up: UpStack,
) -> None:
    before = exec_ids(up)
    res = kanade(up, "exec", "hello", "--pc", "locl-1")
    assert res.returncode == 1
    assert "unknown pc 'locl-1'" in res.stderr and "did you mean local-1" in res.stderr
    assert "--pc: " in res.stderr and "--force" in res.stderr  # the CLI's words
    t0 = time.monotonic()
    res = kanade(up, "run", "--pc", "nosuch", "--", "true")
    assert res.returncode == 1 and "unknown pc 'nosuch'" in res.stderr
    assert time.monotonic() - t0 < 15  # refused, not waited for
    res = kanade(up, "run", "--group", "nosuchgroup", "--", "true")
    assert res.returncode == 1 and "unknown group 'nosuchgroup'" in res.stderr
    assert "known: canary, local" in res.stderr
    res = kanade(up, "exec", "hello", "--all", "--wave", "group:canry", "--wave", "rest")
    assert res.returncode == 1 and "did you mean canary" in res.stderr
    assert exec_ids(up) == before  # no pending 0/0 exec, nothing sent

    res = kanade(up, "revoke", "helo")
    assert res.returncode == 1 and "did you mean hello" in res.stderr
    assert lines(kanade(up, "revocations", "--json").stdout) == []
    res = kanade(up, "config", "set", "--pc", "nosuch", "heartbeat_interval", "10s")
    assert res.returncode == 1 and "unknown pc 'nosuch'" in res.stderr
    assert "pc.nosuch" not in {x["layer"] for x in lines(kanade(up, "config", "get",
                                                                "--json").stdout)}
    res = kanade(up, "group", "add", "web", "nosuch")
    assert res.returncode == 1 and "unknown pc 'nosuch'" in res.stderr
    assert "web" not in {g["group"] for g in lines(kanade(up, "group", "list", "--json").stdout)}


def test_force_sends_to_a_pc_that_has_not_connected_yet(up: UpStack) -> None:
    res = kanade(up, "exec", "hello", "--pc", "later-1", "--force", "--json")
    assert res.returncode == 0, res.stderr
    (created,) = lines(res.stdout)
    assert created["expected_pcs"] == ["later-1"]
    assert kanade(up, "kill", created["exec_id"]).returncode == 0


def test_an_exec_of_a_revoked_job_is_refused_with_the_way_out(up: UpStack) -> None:
    assert kanade(up, "revoke", "hello").returncode == 0
    try:
        before = exec_ids(up)
        res = kanade(up, "exec", "hello", "--all")
        assert res.returncode == 1 and "job 'hello' is revoked" in res.stderr
        assert "kanade unrevoke hello" in res.stderr
        assert exec_ids(up) == before
    finally:
        assert kanade(up, "unrevoke", "hello").returncode == 0


def test_enable_after_disable_cascade_kill_says_the_job_is_revoked(
    up: UpStack, tmp_path: Path
) -> None:
    doc = tmp_path / "s.yaml"
    doc.write_text("id: edge-nightly\njob_id: uptime-check\nwhen: {calendar: {at: '03:00'}}\n"
                   "target: {all: true}\n")  # fmt: skip
    assert kanade(up, "schedule", "create", str(doc)).returncode == 0
    try:
        assert kanade(up, "schedule", "disable", "edge-nightly", "--cascade-kill").returncode == 0
        res = kanade(up, "schedule", "enable", "edge-nightly")
        assert res.returncode == 0
        assert "job uptime-check is revoked" in res.stderr
        assert "kanade unrevoke uptime-check" in res.stderr
    finally:
        kanade(up, "unrevoke", "uptime-check")
        kanade(up, "schedule", "delete", "edge-nightly")


# --- item 7: output -----------------------------------------------------------------------------
def test_results_list_shows_the_id_results_output_takes(up: UpStack) -> None:
    res = kanade(up, "run", "--pc", "local-1", "--json", "--", "echo edge-out")
    (row,) = lines(res.stdout)
    (result,) = api(up, "/api/results", exec_id=row["exec_id"])["items"]
    table = kanade(up, "results", "--exec", row["exec_id"])
    assert "result id" in table.stdout and result["result_id"] in table.stdout
    out = kanade(up, "results", "output", result["result_id"])
    assert out.returncode == 0 and out.stdout == "edge-out\n"


def test_exec_wait_names_its_exec(up: UpStack) -> None:
    before = exec_ids(up)
    res = kanade(up, "exec", "hello", "--all", "--wait")
    assert res.returncode == 0, res.stderr
    (exec_id,) = exec_ids(up) - before
    assert f"exec {exec_id}: 3/3 succeeded" in res.stdout
    res = kanade(up, "exec", "hello", "--pc", "local-2", "--wait", "--json")
    (row,) = lines(res.stdout)
    assert row["exec_id"] in exec_ids(up) - before - {exec_id}


def test_piped_tables_are_not_wrapped_at_80_columns(up: UpStack) -> None:
    kanade(up, "run", "--all", "--json", "--", "true")
    res = kanade(up, "executions", "--limit", "3")
    ids = [e["exec_id"] for e in api(up, "/api/executions", limit=3)["items"]]
    assert ids and all(i in res.stdout for i in ids)  # a 32-character id in one piece
    assert max(len(line) for line in res.stdout.splitlines()) > 80


def _slow_one(lock: Path, seconds: float) -> str:
    """A script the first pc to take ``lock`` finishes at once; the others after a while."""
    return f"if mkdir {lock} 2>/dev/null; then echo first; else sleep {seconds}; echo later; fi"


def test_results_reach_a_piped_stdout_as_they_arrive_with_a_bar_on_a_terminal(
    up: UpStack, tmp_path: Path
) -> None:
    main_fd, tty_fd = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN / "kanade"), "run", "--all", "--", _slow_one(tmp_path / "lock", 6)],
        stdout=subprocess.PIPE, stderr=tty_fd, env={**env(up), "TERM": "xterm"},
    )  # fmt: skip
    os.close(tty_fd)
    try:
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        seen = b""

        def first_result() -> bool:
            nonlocal seen
            seen += proc.stdout.read() or b""  # type: ignore[union-attr]
            while True:  # keep the terminal's buffer drained
                try:
                    if not os.read(main_fd, 65536):
                        break
                except (BlockingIOError, OSError):
                    break
            return b"| first" in seen

        os.set_blocking(main_fd, False)
        wait_until(first_result, "the first result on stdout", timeout=30)
        first_at = time.monotonic()
        wait_until(lambda: first_result() and proc.poll() is not None, "kanade ended",
                   timeout=30)  # fmt: skip
        # Printed as it arrived: well before the others, which slept 6 s, ended the run.
        assert time.monotonic() - first_at > 3, seen
    finally:
        proc.kill()
        proc.wait(10)
        os.close(main_fd)


def test_progress_lines_off_a_terminal(up: UpStack, tmp_path: Path) -> None:
    # The others sleep long enough for several progress lines (every 3 s) after the first
    # result, however late a loaded machine delivers it.
    run = Streamed(up.url, "run", "--all", "--", _slow_one(tmp_path / "lock", 12))
    try:
        assert run.wait(60) == 0, run.err
    finally:
        run.close()
    assert "1/3 finished after" in run.err and "still waiting for 2 pc(s)" in run.err


def test_cells_are_for_people_not_python_reprs_or_byte_counts(up: UpStack) -> None:
    agent = api(up, "/api/agents/local-1")
    res = kanade(up, "agents", "show", "local-1")
    assert "canary, local" in res.stdout and "['canary'" not in res.stdout
    assert "MiB" in res.stdout and str(agent["rss_bytes"]) not in res.stdout
    res = kanade(up, "config", "effective", "local-1")
    assert "256 KiB" in res.stdout and "30.0" not in res.stdout


def test_errors_name_cli_options_and_are_json_under_json(up: UpStack, tmp_path: Path) -> None:
    res = kanade(up, "schedule", "preview", "nosuch", "-n", "0")
    assert res.returncode == 2 and "'-n'" in res.stderr and "query.n" not in res.stderr
    doc = tmp_path / "s.yaml"
    doc.write_text("id: edge-twice\njob_id: hello\nwhen: {calendar: {at: '03:00'}}\n"
                   "target: {all: true}\n")  # fmt: skip
    assert kanade(up, "schedule", "create", str(doc)).returncode == 0
    try:
        doc.write_text(doc.read_text().replace("03:00", "04:00"))
        res = kanade(up, "schedule", "create", str(doc))
        assert res.returncode == 1 and "--replace" in res.stderr and "/api/" not in res.stderr
    finally:
        kanade(up, "schedule", "delete", "edge-twice")

    res = kanade(up, "kill", "no-such-exec", "--json")
    assert res.returncode == 1 and "not found" in json.loads(res.stdout)["error"]
    res = kanade(up, "exec", "hello", "--pc", "nosuch", "--json")
    (err,) = lines(res.stdout)
    assert res.returncode == 1 and err["details"][0].startswith("--pc: no pc named 'nosuch'")
    res = kanade(up, "executions", "--status", "bogus")
    assert res.returncode == 2 and "'--status'" in res.stderr
    res = kanade(up, "executions", "--status", "bogus", "--json")
    assert res.returncode == 2 and json.loads(res.stdout)["exit_code"] == 2


def test_config_takes_durations_like_every_other_option(up: UpStack) -> None:
    res = kanade(up, "config", "set", "--pc", "local-2", "heartbeat_interval", "10s")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "pc.local-2: heartbeat_interval = 10s"
    try:
        (layer,) = lines(kanade(up, "config", "get", "--pc", "local-2", "--json").stdout)
        assert layer["settings"] == {"heartbeat_interval": 10.0}
    finally:
        kanade(up, "config", "unset", "--pc", "local-2", "--all-keys")


def test_kill_of_a_finished_exec_says_so_and_fails(up: UpStack) -> None:
    (row,) = lines(kanade(up, "run", "--pc", "local-1", "--json", "--", "true").stdout)
    res = kanade(up, "kill", row["exec_id"])
    assert res.returncode == 1 and "already ended (completed)" in res.stderr
    assert "kill sent" not in res.stdout


def test_group_rm_of_a_group_from_the_agent_flags_explains(up: UpStack) -> None:
    try:
        res = kanade(up, "group", "rm", "local", "local-3")
        assert res.returncode == 1
        assert "from its own --group flags: local" in res.stdout
        assert "comes from the agent's own --group flag" in res.stderr
    finally:
        kanade(up, "group", "add", "local", "local-3")  # as kanade up registered it


# --- item 8: states that say what really happens ------------------------------------------------
def test_rollout_waves_are_counted_as_the_dashboard_counts_them(up: UpStack) -> None:
    res = kanade(up, "exec", "hello", "--all", "--wave", "group:canary", "--wave", "rest",
                 "--wave-delay", "1h", "--json")  # fmt: skip
    (created,) = lines(res.stdout)
    rid = created["rollout_id"]
    try:
        def first_settled() -> bool:
            r = api(up, f"/api/rollouts/{rid}")
            return bool(r["waves"][0]["state"] == "settled")

        wait_until(first_settled, "wave 0 settled", timeout=30)
        shown = kanade(up, "rollout", "show", rid).stdout
        assert "waves settled 1/2  current: wave 1" in shown  # the dashboard's "1/2"
        listed = kanade(up, "rollout", "list").stdout
        row = next(line for line in listed.splitlines() if rid in line)
        assert "1/2" in row and "2/2" not in row
    finally:
        kanade(up, "rollout", "abort", rid)


def test_ping_of_an_unknown_pc_is_refused_at_once_with_close_matches(up: UpStack) -> None:
    t0 = time.monotonic()
    res = kanade(up, "ping", "locl-2", "--timeout", "5")
    assert res.returncode == 1 and "did you mean local-2" in res.stderr
    assert "no answer" not in res.stderr and time.monotonic() - t0 < 5


def test_a_disabled_schedule_previews_its_fire_times_marked_disabled(
    up: UpStack, tmp_path: Path
) -> None:
    doc = tmp_path / "off.yaml"
    doc.write_text("id: edge-off\njob_id: hello\nwhen: {calendar: {at: '03:00'}}\n"
                   "target: {all: true}\nenabled: false\n")  # fmt: skip
    assert kanade(up, "schedule", "create", str(doc)).returncode == 0
    try:
        res = kanade(up, "schedule", "preview", "edge-off", "-n", "3")
        assert res.returncode == 0 and "DISABLED" in res.stdout
        assert res.stdout.count("T03:00:00Z") == 3 and res.stdout.count("│ disabled") == 3
    finally:
        kanade(up, "schedule", "delete", "edge-off")
