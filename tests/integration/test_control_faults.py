"""The strict staleness gate (SPEC §3.3 gate 1, exit 127) with a real broker outage.

A job with ``staleness: {mode: strict, max_cache_age: 1s}`` waits in an agent's local
queue (``max_local_concurrent`` 1, set live through ``kanade config``) behind a long
script; the broker is killed while that script runs, so when the queued job is finally
evaluated the agent's view of KV is older than 1 s and the job is skipped with 127.
The result waits in the agent's outbox and reaches the backend once the broker is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_control_stack import ControlStack, json_lines, start_stack, stop_stack, wait_until

from kanade.agent.durable.outbox import Envelope
from kanade.core.ids import result_id_for
from kanade.core.models.wire import Result, decode

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

STRICT_JOB = """\
id: strict-job
version: '1'
execute:
  shell: sh
  script: echo fresh
  timeout: 30s
staleness:
  mode: strict
  max_cache_age: 1s
"""


@pytest.fixture
def stack(tmp_path: Path, store_url: str) -> Iterator[ControlStack]:
    s = start_stack(tmp_path / "stack", db=store_url)
    try:
        yield s
    finally:
        stop_stack(s)


def outbox_result(stack: ControlStack, pc: str, request_id: str) -> Result | None:
    """The result of ``request_id`` while it still sits in the agent's outbox."""
    wanted = result_id_for(request_id, pc)
    for path in sorted((stack.fleet[pc].data_dir / "outbox").glob("*.msg")):
        try:
            env = Envelope.load(path.read_bytes())
        except (OSError, ValueError, KeyError):
            continue  # being written or already published
        if env.msg_id == wanted:
            return decode(Result, env.data)
    return None


@pytest.mark.slow  # a broker crash and restart (~15 s): a fault test
def test_strict_staleness_skips_with_127_after_the_broker_went_away(
    stack: ControlStack, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    agent = stack.agent("st-1")
    stack.ok("config", "set", "--pc", "st-1", "max_local_concurrent", "1")
    wait_until(
        lambda: "'max_local_concurrent': 1" in agent.log_text(),
        what="st-1 applied max_local_concurrent 1",
        diagnostics=agent.log_tail,
    )
    stack.create_job(STRICT_JOB, tmp_path / "strict.yaml")
    # Connected, the view is current (age 0): the strict job runs.
    res = stack.ok("exec", "strict-job", "--pc", "st-1", "--wait", "--json")
    assert [x["stdout"] for x in json_lines(res.stdout)] == ["fresh\n"]

    gate = tmp_path / "release"
    first = stack.run_adhoc(
        "st-1",
        f"touch {tmp_path}/first.started; while [ ! -f {gate} ]; do sleep 0.05; done",
    )
    wait_until(lambda: (tmp_path / "first.started").exists(), what="first script running")
    (queued,) = json_lines(stack.ok("exec", "strict-job", "--pc", "st-1", "--json").stdout)
    request_id = stack.execution(queued["exec_id"])["request_id"]

    def behind_first() -> bool:
        hb = stack.http().post("/api/agents/st-1/ping").json()
        return hb["running"] == 1 and hb["queue_length"] == 1

    wait_until(behind_first, what="strict job queued locally", diagnostics=agent.log_tail)

    disconnects = agent.log_text().count("disconnected from NATS")
    stack.broker.kill()
    wait_until(
        lambda: agent.log_text().count("disconnected from NATS") > disconnects,
        what="agent noticed the broker is gone",
        diagnostics=agent.log_tail,
    )
    # Not synchronisation: the agent's view must become older than max_cache_age (1 s).
    time.sleep(1.5)
    gate.touch()
    skipped = wait_until(
        lambda: outbox_result(stack, "st-1", request_id),
        what="strict job evaluated while offline",
        diagnostics=agent.log_tail,
    )
    assert skipped.exit_code == 127 and skipped.skipped

    stack.broker.start()
    result = stack.result_of(queued["exec_id"], "st-1", timeout=60)
    assert result["exit_code"] == 127 and result["skipped"] is True
    assert "staleness policy strict" in result["stderr"]
    assert "max_cache_age is 1s" in result["stderr"]
    assert stack.result_of(first["exec_id"], "st-1", timeout=60)["exit_code"] == 0
    print(f'{{"name": "control.staleness_127", "seconds": {time.monotonic() - t0:.3f}}}')
