"""Whether a group or fleet-wide command is for this pc (SPEC §3.2): it is only if the pc
was a member of that group — enrolled, for a fleet-wide one — when the command was
issued. Joining later never replays the group's earlier commands, whatever the broker or
the agent's consumer replays (docs/agent.md, "Membership at issue time").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from kanade.core.instants import format_instant


def broadcast_refusal(
    scope: str,
    group: str | None,
    issued_at: datetime,
    *,
    enrolled_at: datetime,
    joined: Mapping[str, datetime | None],
) -> str | None:
    """None when the command is for this pc, else why it is not (the agent acks it
    without running it: it is genuine, just not for this pc).

    ``joined`` is the pc's current groups, each with the instant it joined (backend
    clock, from its signed KV membership), None when unknown (a group only the agent's
    own ``--group`` flags name, or a membership value from before ``since`` was
    recorded): those count from the agent's enrolment. ``enrolled_at`` bounds every
    broadcast, so a re-installed machine never replays the fleet's or its groups' old
    commands.
    """
    if issued_at < enrolled_at:
        return (
            f"issued at {format_instant(issued_at)}, before this agent enrolled "
            f"({format_instant(enrolled_at)})"
        )
    if scope != "group":
        return None
    if group is None or group not in joined:
        return f"not in group {group}"
    since = joined[group]
    if since is not None and issued_at < since:
        return (
            f"issued at {format_instant(issued_at)}, before this pc joined group {group} "
            f"({format_instant(since)})"
        )
    return None


__all__ = ["broadcast_refusal"]
