"""The agent's admission gates (kanade.core.gates.evaluate_gates), in their order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kanade.core import exitcodes
from kanade.core.gates import GateSkip, KvView, evaluate_gates
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
            "expires_at": (NOW + timedelta(days=7)).isoformat(),
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



def test_gate_5_refuses_what_intake_refused_after_the_deadline_gate() -> None:
    skip = evaluate_gates(
        command(), now=NOW, view=KvView(), shell_available=True, refusal="refused: unsigned"
    )
    assert skip == GateSkip(exitcodes.REFUSED, "refused: unsigned")
    late = command(deadline_at=(NOW - timedelta(seconds=1)).isoformat())
    skip = evaluate_gates(late, now=NOW, view=KvView(), shell_available=True, refusal="x")
    assert skip is not None and skip.exit_code == exitcodes.DEADLINE_PASSED


def test_gate_5_refuses_a_command_without_expiry_expired_or_from_the_future() -> None:
    cases = {
        "carries no expires_at": command(expires_at=None),
        "expired at": command(expires_at=(NOW - timedelta(seconds=1)).isoformat()),
        "issued in the future": command(
            issued_at=(NOW + timedelta(minutes=6)).isoformat(),
            expires_at=(NOW + timedelta(days=1)).isoformat(),
        ),
        "exceeds the maximum": command(expires_at=(NOW + timedelta(days=8)).isoformat()),
    }
    for why, cmd in cases.items():
        skip = evaluate_gates(cmd, now=NOW, view=KvView(), shell_available=True)
        assert skip is not None and skip.exit_code == exitcodes.REFUSED, why
        assert why in skip.reason


def test_gate_5_lets_a_command_at_its_expiry_and_within_the_clock_skew_run() -> None:
    at_expiry = command(expires_at=NOW.isoformat(), issued_at=(NOW - timedelta(days=1)).isoformat())
    assert evaluate_gates(at_expiry, now=NOW, view=KvView(), shell_available=True) is None
    skewed = command(
        issued_at=(NOW + timedelta(minutes=4)).isoformat(),
        expires_at=(NOW + timedelta(days=7)).isoformat(),
    )
    assert evaluate_gates(skewed, now=NOW, view=KvView(), shell_available=True) is None
