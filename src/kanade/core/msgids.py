"""Every ``Nats-Msg-Id`` kanade publishes with: the broker's dedup key, built here only.

Within a stream's duplicate window the broker stores a message id once, so a publish
retried after a lost ack is harmless — *if* the retry carries the same id. Each format below
is therefore frozen: changing one byte would make a process of the new version re-publish
what an old one already stored (a double command, a second audit row) across an upgrade.
tests/unit/core/test_msgids.py pins every format.
"""

from __future__ import annotations

from datetime import datetime

from kanade.core.ids import new_id


def command_msg_id(request_id: str, subject: str) -> str:
    """A command: one per request and subject (the same request to a pc and to a group
    are two messages)."""
    return f"{request_id}:{subject}"


def result_msg_id(result_id: str) -> str:
    """An agent's result (``kanade.result.<pc>``): its deterministic result id."""
    return result_id


def started_msg_id(result_id: str) -> str:
    """An agent's EventStarted (``kanade.started.<pc>``)."""
    return f"{result_id}.started"


def decision_msg_id(decision_id: str) -> str:
    """An agent's schedule decision (``kanade.decision.<pc>.<schedule>``): one per pc,
    occurrence and outcome (``ScheduleDecisionReport.decision_id``)."""
    return f"decision:{decision_id}"


def exec_created_msg_id(exec_id: str) -> str:
    """``kanade.exec.created.<exec_id>``: an exec is created once."""
    return f"exec:{exec_id}"


def exec_status_msg_id(event: str, exec_id: str) -> str:
    """``kanade.exec.<event>.<exec_id>`` (approved, rejected, cancelled): once per event."""
    return f"exec-{event}:{exec_id}"


def _key_part(part: str | datetime) -> str:
    # An instant is keyed by its POSIX timestamp as Python prints a float (repr), the
    # form these ids have always had.
    return f"{part.timestamp()}" if isinstance(part, datetime) else part


def audit_msg_id(action: str, *key: str | datetime) -> str:
    """An audit record that must be written once per ``(action, key…)``:
    ``audit:<action>:<key>[:<key>…]``; a datetime key part is its POSIX timestamp."""
    return ":".join(("audit", action, *(_key_part(part) for part in key)))


def fresh_audit_msg_id(action: str) -> str:
    """An audit record of an event that happens once by construction (an API call): a
    random key, so the id only guards the retry of this very publish."""
    return audit_msg_id(action, new_id())


__all__ = [
    "audit_msg_id",
    "command_msg_id",
    "decision_msg_id",
    "exec_created_msg_id",
    "exec_status_msg_id",
    "fresh_audit_msg_id",
    "result_msg_id",
    "started_msg_id",
]
