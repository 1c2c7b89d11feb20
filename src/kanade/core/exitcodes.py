"""Reserved exit codes for synthetic results (SPEC §2.5).

A synthetic result is one the agent produces without running the script. The
``skipped`` flag on the result, not the code, is what marks a skip; the codes
tell an operator *why* at a glance and stay stable across versions.
"""

from __future__ import annotations

from typing import Final

UNSUPPORTED: Final = 122  # shell / OS / gate not available on this machine
REFUSED: Final = 123  # signature, recipient or expiry check failed
VERSION_PIN_MISMATCH: Final = 124  # the job's pinned version differs from the command's
DEADLINE_PASSED: Final = 125  # the starting deadline passed before the script could start
REVOKED: Final = 126  # the job is revoked
STALENESS: Final = 127  # strict staleness policy: the agent's view of KV is too old
KILLED: Final = -1  # killed, timed out, or reaped

RESERVED: Final[dict[int, str]] = {
    UNSUPPORTED: "unsupported",
    REFUSED: "refused",
    VERSION_PIN_MISMATCH: "version pin mismatch",
    DEADLINE_PASSED: "starting deadline passed",
    REVOKED: "revoked",
    STALENESS: "staleness policy",
    KILLED: "killed / timed out / reaped",
}


def describe(code: int) -> str | None:
    """The reserved meaning of ``code``, or None for an ordinary exit code."""
    return RESERVED.get(code)
