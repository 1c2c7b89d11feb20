"""Every Nats-Msg-Id format, pinned byte for byte: the broker dedups on them, so a change
would double-publish across an upgrade."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from kanade.core import msgids

AT = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)


def test_command_and_agent_ids() -> None:
    assert msgids.command_msg_id("r1", "kanade.cmd.pc.a.job") == "r1:kanade.cmd.pc.a.job"
    assert msgids.result_msg_id("0123abcd") == "0123abcd"
    assert msgids.started_msg_id("0123abcd") == "0123abcd.started"


def test_exec_record_ids() -> None:
    assert msgids.exec_created_msg_id("e1") == "exec:e1"
    assert msgids.exec_status_msg_id("cancelled", "e1") == "exec-cancelled:e1"
    assert msgids.exec_status_msg_id("approved", "e1") == "exec-approved:e1"


def test_audit_ids() -> None:
    assert msgids.audit_msg_id("exec", "e1") == "audit:exec:e1"
    assert msgids.audit_msg_id("rollout_wave", "e1-w0") == "audit:rollout_wave:e1-w0"
    assert msgids.audit_msg_id("approve", "e1") == "audit:approve:e1"
    # an instant key is the float timestamp as f"{t.timestamp()}" prints it
    assert msgids.audit_msg_id("approve_unattended", "job", "v1", AT) == (
        f"audit:approve_unattended:job:v1:{AT.timestamp()}"
    )
    assert msgids.audit_msg_id("rollout_abort", "r1", AT) == "audit:rollout_abort:r1:1772366400.25"


def test_fresh_audit_ids_differ() -> None:
    first, second = msgids.fresh_audit_msg_id("kill"), msgids.fresh_audit_msg_id("kill")
    assert first != second
    assert re.fullmatch(r"audit:kill:[0-9a-f]{32}", first)
