"""The agent's admission gates (SPEC §3.3), as one pure function.

Every command that reaches an agent, received or fired by its local
scheduler, passes these gates in this order. A gate that stops a command
produces a *synthetic skipped result* with a reserved exit code, so nothing
stays pending and the operator sees why.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from kanade.core import exitcodes
from kanade.core.instants import format_instant
from kanade.core.models.wire import Command
from kanade.core.signing import lifetime_refusal


@dataclass(frozen=True)
class KvView:
    """What the agent last saw of the fleet state in KV.

    ``age_s`` is how stale that view may be: 0 while connected (the watchers keep
    it current), the time since the last disconnect otherwise.
    """

    pins: Mapping[str, str] = field(default_factory=dict)
    revoked: Collection[str] = frozenset()
    age_s: float = 0.0


@dataclass(frozen=True)
class GateSkip:
    exit_code: int
    reason: str


def check_deadline(deadline_at: datetime | None, now: datetime) -> GateSkip | None:
    """``now > deadline`` skips; ``now == deadline`` still runs."""
    if deadline_at is None or now <= deadline_at:
        return None
    late = (now - deadline_at).total_seconds()
    return GateSkip(
        exitcodes.DEADLINE_PASSED,
        f"starting deadline passed: {late:.3f}s late "
        f"(deadline {format_instant(deadline_at)}, now {format_instant(now)})",
    )


def check_authenticity(cmd: Command, refusal: str | None, now: datetime) -> GateSkip | None:
    """Gate 5 (SPEC §8.2): ``refusal`` is what intake found wrong with the command's
    signature or recipient (None: signed by a trusted key, addressed to this pc, or fired
    by this agent's own scheduler from verified documents); the signed lifetime is
    checked here, against ``now``."""
    if refusal is not None:
        return GateSkip(exitcodes.REFUSED, refusal)
    outside = lifetime_refusal(cmd.issued_at, cmd.expires_at, now)
    return None if outside is None else GateSkip(exitcodes.REFUSED, outside)


def evaluate_gates(
    cmd: Command,
    *,
    now: datetime,
    view: KvView,
    shell_available: bool,
    refusal: str | None = None,
    invalid: str | None = None,
) -> GateSkip | None:
    """The first gate that stops ``cmd``, or None when it may run.

    ``invalid`` (gate 0): why the command's body is out of bounds
    (:func:`kanade.core.models.wire.decode_command`; ``cmd`` is then a stand-in). Nothing
    else about it can be trusted, so it is skipped before any other gate, with the field.
    """
    if invalid is not None and refusal is None:
        return GateSkip(exitcodes.UNSUPPORTED, f"invalid command: {invalid}")
    policy = cmd.staleness
    if policy.mode == "strict":
        max_age = policy.max_cache_age_s or 0.0
        if view.age_s > max_age:
            age = "never synced" if math.isinf(view.age_s) else f"{view.age_s:.1f}s old"
            return GateSkip(
                exitcodes.STALENESS,
                f"staleness policy strict: fleet state is {age}, max_cache_age is {max_age:g}s",
            )
    if policy.mode != "unchecked":
        pinned = view.pins.get(cmd.job_id)
        if pinned is not None and pinned != cmd.version:
            return GateSkip(
                exitcodes.VERSION_PIN_MISMATCH,
                f"version pin mismatch: job {cmd.job_id} is pinned to {pinned}, "
                f"command carries {cmd.version}",
            )
        if cmd.job_id in view.revoked:
            return GateSkip(exitcodes.REVOKED, f"job {cmd.job_id} is revoked")
    skip = check_deadline(cmd.deadline_at, now) or check_authenticity(cmd, refusal, now)
    if skip is not None:
        return skip
    if not shell_available:
        return GateSkip(
            exitcodes.UNSUPPORTED, f"shell {cmd.shell!r} is not available on this machine"
        )
    return None
