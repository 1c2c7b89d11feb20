"""Fleet liveness: how fresh an agent's last heartbeat is (SPEC §4.1, §4.6). Pure."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, Literal

AgentStatus = Literal["alive", "stale", "offline"]

ALIVE_WINDOW: Final = timedelta(minutes=2)
"""An agent heard from within this window is alive: exec targets it and expects a result."""

STALE_WINDOW: Final = timedelta(minutes=10)
"""Heard from within this window but not alive: shown as stale, not expected to answer."""


def agent_status(last_seen: datetime, now: datetime, *, stopped: bool = False) -> AgentStatus:
    """``alive`` / ``stale`` / ``offline`` from the age of the last heartbeat.

    ``last_seen`` is the *receiver's* clock, so agent clock skew cannot make a
    machine look alive. A heartbeat from the future (receiver clock stepped
    back) counts as fresh rather than as offline. An agent whose last heartbeat said it
    was stopping (``stopped``: a clean shutdown) is offline at once, not alive for
    another :data:`ALIVE_WINDOW`: no exec expects it until it beats again.
    """
    if stopped:
        return "offline"
    age = now - last_seen
    if age <= ALIVE_WINDOW:
        return "alive"
    if age <= STALE_WINDOW:
        return "stale"
    return "offline"


def alive_cutoff(now: datetime) -> datetime:
    """Oldest ``last_seen`` that still counts as alive at ``now`` (for SQL filters)."""
    return now - ALIVE_WINDOW
