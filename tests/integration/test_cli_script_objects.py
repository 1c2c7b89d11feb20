"""A script too big for a command runs as a script object, end to end (issue #15 item 2):
running it inline is refused before anything is created, with what to do; ``kanade script
upload`` stores it, a job names it, ``kanade exec --wait`` runs it on a real agent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stack import UpStack, start_up, stop_up


# SQLite only: `kanade up` keeps its store in its data dir (it takes no --db); its
# PostgreSQL topology, `kanade up --cluster`, is test_up_cluster.py's.
@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    base = tmp_path_factory.mktemp("scriptobj")
    stack = start_up(base / "data", base / "up.log", agents=1, examples=False)
    try:
        yield stack
    finally:
        stop_up(stack)


def test_a_big_script_runs_as_a_script_object(up: UpStack, tmp_path: Path) -> None:
    # 1.5 MB: over the 1 MiB a command may carry, well under --max-script-bytes.
    script = "# padding line to make the script big\n" * 40_000 + "echo big-script-ran\n"
    # (Through the API: a 1.5 MB argument is over what a command line may carry.)
    too_big = httpx.post(
        f"{up.url}/api/run", json={"script": script, "target": {"pcs": ["local-1"]}}, timeout=30
    )
    assert too_big.status_code == 413
    assert "kanade script upload" in too_big.json()["error"]
    listed = up.kanade("executions", "--json")
    assert listed.returncode == 0 and listed.stdout.strip() == ""  # nothing left pending

    path = tmp_path / "big.sh"
    path.write_text(script)
    res = up.kanade("script", "upload", str(path), "big/1", "--json")
    assert res.returncode == 0, res.stderr
    stored = json.loads(res.stdout)
    assert stored["script_object"] == "big/1" and stored["size"] == len(script)
    again = up.kanade("script", "upload", str(path), "big/1")
    assert again.returncode == 0 and "big/1" in again.stdout

    job = tmp_path / "big.yaml"
    job.write_text(
        "id: big\nversion: '1'\nexecute: {shell: sh, script_object: big/1, timeout: 30s}\n"
    )
    assert up.kanade("job", "create", str(job)).returncode == 0
    res = up.kanade("exec", "big", "--pc", "local-1", "--wait", "--json")
    assert res.returncode == 0, res.stderr
    assert "big-script-ran" in res.stdout
