"""Waiting for an exec's results (kanade.cli.waiting): never past the wait's deadline, the pcs
still awaited named, each result printed as it arrives off a terminal, a no_result pc done."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from kanade.cli.client import CliError
from kanade.cli.commands.exec import ends_by
from kanade.cli.waiting import GRACE_S, print_results, wait_for_exec, wait_limit_s


class FakeApi:
    """Answers ``GET /api/executions/{id}`` from a script of answers (the last repeats)."""

    def __init__(self, *answers: dict[str, Any] | CliError) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.timeouts: list[float] = []

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        self.calls += 1
        self.timeouts.append(kw["timeout"])
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if isinstance(answer, CliError):
            raise answer
        return answer


def row(pc: str, state: str, **kw: Any) -> dict[str, Any]:
    return {"pc_id": pc, "state": state, **kw}


CREATED = {"exec_id": "e1", "expected_count": 2}
PENDING = {"status": "running", "results": [row("a", "finished", exit_code=0, stdout="hi\n"),
                                            row("b", "pending")]}  # fmt: skip


def test_the_wait_limit() -> None:
    assert wait_limit_s(CREATED, timeout_s=60) == 60 + GRACE_S
    assert wait_limit_s(CREATED, timeout_s=60, starting_deadline_s=30) == 90 + GRACE_S
    assert wait_limit_s({**CREATED, "timeout_s": 5}) == 5 + GRACE_S  # the exec's own
    assert wait_limit_s(CREATED, timeout_s=60, max_wait_s=3) == 3
    assert wait_limit_s(CREATED, max_wait_s=-1) == 0


def test_the_deadline_names_the_pcs_still_awaited(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(PENDING)
    t0 = time.monotonic()
    ok = wait_for_exec(api, CREATED, json_mode=False, max_wait_s=0.4)  # type: ignore[arg-type]
    took = time.monotonic() - t0
    out = capsys.readouterr()
    assert not ok
    assert 0.4 <= took < 1.5
    assert max(api.timeouts) <= 0.4  # no request may outlast the deadline either
    assert "waiting for 2 pc(s), at most 0.4s" in out.err
    assert "still waiting for 1 of 2 pc(s): b" in out.err
    # off a terminal: a's result once (as it arrived), then b as still pending
    assert out.out.count("a  exit 0") == 1 and "| hi" in out.out and "b  pending" in out.out


def test_a_no_result_pc_is_done_not_awaited(capsys: pytest.CaptureFixture[str]) -> None:
    closed = {"status": "completed", "results": [
        PENDING["results"][0],
        row("b", "no_result", note="no result: never started by the exec's deadline …"),
    ]}  # fmt: skip
    api = FakeApi(PENDING, closed)
    ok = wait_for_exec(api, CREATED, json_mode=False, max_wait_s=30)  # type: ignore[arg-type]
    out = capsys.readouterr()
    assert not ok and api.calls == 2  # ended at once, without waiting for the deadline
    assert "b  no result" in out.out and "never started by the exec's deadline" in out.out
    assert "still waiting" not in out.err


def test_json_lines_come_as_results_arrive(capsys: pytest.CaptureFixture[str]) -> None:
    done = {"status": "completed", "results": [
        PENDING["results"][0], row("b", "finished", exit_code=0, stdout="yo\n"),
    ]}  # fmt: skip
    ok = wait_for_exec(FakeApi(PENDING, done), CREATED, json_mode=True)  # type: ignore[arg-type]
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert ok and [x["pc_id"] for x in lines] == ["a", "b"]
    # Every line names its exec: `exec --wait --json` says which exec it started.
    assert lines[0] == {"exec_id": CREATED["exec_id"], "pc_id": "a", "state": "finished",
                        "exit_code": 0, "stdout": "hi\n", "stderr": None, "skipped": False,
                        "note": None}  # fmt: skip


def test_a_backend_that_stops_answering_ends_the_wait_at_its_deadline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = FakeApi(CliError("the backend at http://x did not answer in time"))
    ok = wait_for_exec(api, CREATED, json_mode=False, max_wait_s=0.3)  # type: ignore[arg-type]
    assert not ok
    assert "did not answer in time" in capsys.readouterr().err


def test_a_rejected_exec_is_not_waited_for() -> None:
    rejected = {"status": "rejected", "results": [row("a", "pending"), row("b", "pending")]}
    api = FakeApi(rejected)
    t0 = time.monotonic()
    assert not wait_for_exec(api, CREATED, json_mode=True, max_wait_s=30)  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 5


def test_ends_by_says_when_a_waiting_exec_ends_by_itself() -> None:
    assert ends_by({"status": "running", "deadline_at": "2026-03-08T12:00:00Z"}) == (
        "2026-03-08T12:00:00Z"
    )
    assert ends_by({"status": "pending"}).startswith("not known yet")
    assert ends_by({"status": "awaiting_approval"}).startswith("approval")
    assert ends_by({"status": "completed", "deadline_at": "x"}) == ""
    # completed by an unexpected pc while an expected one is still pending: not ended yet
    waiting = {"status": "completed", "deadline_at": "x", "results": [row("b", "pending")]}
    assert ends_by(waiting) == "x"
    assert ends_by({**waiting, "ended_at": "y"}) == ""
    assert ends_by({"status": "cancelled", "results": [row("b", "in_flight")]}) == ""


def test_a_skip_reason_is_said_once(capsys: pytest.CaptureFixture[str]) -> None:
    reason = "job rev-job is revoked (bad script)"
    skipped = row("a", "finished", exit_code=126, skipped=True, stderr=reason,
                  note=f"final attempt 2 of 2 reported; {reason}")  # fmt: skip
    print_results([skipped])
    out = capsys.readouterr().out
    assert out.count(reason) == 1 and "note: final attempt 2 of 2 reported" in out
