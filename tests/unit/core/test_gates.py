"""The agent's admission gates (kanade.core.gates.evaluate_gates), in their order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kanade.core import exitcodes
from kanade.core.gates import KvView, evaluate_gates
from kanade.core.models.wire import Command

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def command(**extra: object) -> Command:
    return Command.model_validate(
        {
            "request_id": "r1",
            "exec_id": "e1",
            "job_id": "hello",
            "version": "1",
            "shell": "sh",
            "script": "echo hi",
            "timeout_s": 10,
            "issued_at": NOW.isoformat(),
            **extra,
        }
    )


def test_an_ordinary_command_passes() -> None:
    assert evaluate_gates(command(), now=NOW, view=KvView(), shell_available=True) is None


def test_gates_in_order_pin_then_revocation_then_deadline_then_shell() -> None:
    late = command(deadline_at=(NOW - timedelta(seconds=1)).isoformat())
    pinned = KvView(pins={"hello": "2"}, revoked={"hello"})
    skip = evaluate_gates(late, now=NOW, view=pinned, shell_available=False)
    assert skip is not None and skip.exit_code == exitcodes.VERSION_PIN_MISMATCH
    skip = evaluate_gates(late, now=NOW, view=KvView(revoked={"hello"}), shell_available=False)
    assert skip is not None and skip.exit_code == exitcodes.REVOKED
    skip = evaluate_gates(late, now=NOW, view=KvView(), shell_available=False)
    assert skip is not None and skip.exit_code == exitcodes.DEADLINE_PASSED
    skip = evaluate_gates(command(), now=NOW, view=KvView(), shell_available=False)
    assert skip is not None and skip.exit_code == exitcodes.UNSUPPORTED

