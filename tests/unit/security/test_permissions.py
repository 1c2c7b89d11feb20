"""The permission matrix: an agent may act only under its own pc_id (SPEC §8.1)."""

from __future__ import annotations

from kanade.core import subjects as s
from kanade.security.permissions import agent_permissions, operator_permissions


def _matches(pattern: str, subject: str) -> bool:
    p, t = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(t) > i
        if i >= len(t) or (token != "*" and token != t[i]):
            return False
    return len(p) == len(t)


def _allowed(allow: tuple[str, ...] | None, subject: str) -> bool:
    return allow is None or any(_matches(p, subject) for p in allow)


def test_an_agent_publishes_only_under_its_own_pc() -> None:
    perms = agent_permissions("pc-a")
    for subject in (
        s.result_subject("pc-a"),
        s.started_subject("pc-a"),
        s.heartbeat_subject("pc-a"),
        s.decision_subject("pc-a", "nightly"),
        s.live_subject("pc-a", "exec-1"),
    ):
        assert _allowed(perms.pub, subject)
    for subject in (
        s.result_subject("pc-b"),
        s.heartbeat_subject("pc-b"),
        s.decision_subject("pc-b", "nightly"),
        "kanade.decision.pc-a.nightly.extra",
        s.live_subject("pc-b", "exec-1"),
        "kanade.live.pc-a.exec-1.extra",
        s.LIVE_WATCH_SUBJECT,
        s.command_subject("all", None, "hello"),
        s.command_subject("pc", "pc-a", "hello"),
        s.audit_subject("exec.created"),
        s.exec_subject("cancelled", "e1"),
        f"$KV.{s.KV_JOBS}.hello",
        f"$KV.{s.KV_REVOCATIONS}.hello",
        f"$JS.API.STREAM.PURGE.{s.STREAM_AUDIT}",
        "$JS.API.STREAM.CREATE.EVIL",
        f"$JS.API.STREAM.DELETE.KV_{s.KV_JOBS}",
        f"$JS.API.CONSUMER.CREATE.{s.STREAM_COMMANDS}.agent-pc-a",
        f"$JS.API.CONSUMER.CREATE.{s.STREAM_COMMANDS}.spy.kanade.cmd.>",
        f"$JS.API.CONSUMER.MSG.NEXT.{s.STREAM_COMMANDS}.agent-pc-b",
        f"$JS.API.CONSUMER.DURABLE.CREATE.KV_{s.KV_JOBS}.spy",
        f"$JS.API.STREAM.PURGE.OBJ_{s.OBJ_OUTPUTS}",
        f"$O.{s.OBJ_SCRIPTS}.C.x",
        s.consumer_request_subject("pc-b"),
    ):
        assert not _allowed(perms.pub, subject), subject


def test_an_agent_reads_only_its_own_control_and_inbox() -> None:
    perms = agent_permissions("pc-a")
    assert _allowed(perms.sub, s.ping_subject("pc-a"))
    assert _allowed(perms.sub, "_INBOX.pc-a.x")
    assert _allowed(perms.sub, f"$KV.{s.KV_GROUPS}.pc-a")
    assert _allowed(perms.sub, s.LIVE_WATCH_SUBJECT)
    for subject in (
        s.ping_subject("pc-b"),
        "_INBOX.pc-b.x",
        "_INBOX.x",
        s.result_subject("pc-b"),
        s.command_subject("all", None, "hello"),
        f"$KV.{s.KV_GROUPS}.pc-b",
        f"$KV.{s.KV_DISPATCH}.x",
        s.live_subject("pc-b", "exec-1"),
        s.live_exec_subjects("exec-1"),
    ):
        assert not _allowed(perms.sub, subject), subject
    assert perms.allow_responses


def test_an_agent_cannot_read_the_operator_state() -> None:
    # KV kanade_state holds users with their password hashes (SPEC §1.3, §8.1).
    perms = agent_permissions("pc-a")
    stream = f"KV_{s.KV_STATE}"
    assert not _allowed(perms.sub, f"$KV.{s.KV_STATE}.user.x")
    for subject in (
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.$KV.{s.KV_STATE}.user.x",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$KV.{s.KV_STATE}.user.x",
    ):
        assert not _allowed(perms.pub, subject), subject


def test_operator_tools_cannot_publish_commands_or_records() -> None:
    perms = operator_permissions()
    for subject in (
        s.command_subject("all", None, "x"),
        s.result_subject("a"),
        s.audit_subject("x"),
    ):
        assert not _allowed(perms.pub, subject)
