"""The approval tables (kanade.backend.store.approvals), on a real SQLite file: a request is
decided once, expiry rejects only what is due, unattended approvals are insert-if-absent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from store_rows import job_command

from kanade.backend.store import approvals as store
from kanade.backend.store import executions
from kanade.core.models.records import ExecRecord

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(hours=1)


def _request(engine: Engine, exec_id: str, at: datetime = T0) -> datetime:
    record = ExecRecord(
        exec_id=exec_id,
        kind="job",
        job_id="j",
        version="1",
        target={"all": True},
        status="awaiting_approval",
        initiated_by="alice",
        created_at=at,
        request_id="q",
    )
    command = job_command(exec_id, at)
    with engine.begin() as conn:
        executions.upsert_executions(conn, [record.row()], at)
        return store.create_request(
            conn,
            record=record,
            command=command,
            subs=["kanade.cmd.all.j"],
            starting_deadline_s=None,
            rollout=False,
            ttl=TTL,
            now=at,
        )


def test_a_request_is_decided_once_and_moves_its_exec(engine: Engine) -> None:
    assert _request(engine, "e1") == T0 + TTL
    with engine.begin() as conn:
        assert store.decide(conn, "e1", state="approved", actor="bob", reason=None, now=T0)
        assert not store.decide(conn, "e1", state="rejected", actor="bob", reason="x", now=T0)
        row = store.load(conn, "e1")
        assert row is not None and row["state"] == "approved" and row["decided_by"] == "bob"
        assert [r["exec_id"] for r in store.undispatched(conn, T0)] == ["e1"]
        store.mark_dispatched(conn, "e1", T0)
        assert store.undispatched(conn, T0) == []


def test_expiry_rejects_only_what_is_due(engine: Engine) -> None:
    _request(engine, "old")
    _request(engine, "new", T0 + timedelta(minutes=30))
    with engine.begin() as conn:
        # Past its expiry a request can no longer be approved…
        assert not store.decide(
            conn, "old", state="approved", actor="bob", reason=None, now=T0 + TTL
        )
        due = store.expire_due(conn, T0 + TTL, actor="system", reason="expired")
        assert due == [("old", "j", "1")]
        assert store.expire_due(conn, T0 + TTL, actor="system", reason="expired") == []
        old = store.get_approval(conn, "old")
        assert old is not None and (old["state"], old["reason"]) == ("rejected", "expired")


def test_unattended_approvals_are_insert_if_absent(engine: Engine) -> None:
    with engine.begin() as conn:
        assert store.add_unattended(conn, "j", "1", "bob", T0)["created"]
        assert not store.add_unattended(conn, "j", "1", "bob", T0)["created"]
        assert store.unattended_ok(conn, "j", "1") and not store.unattended_ok(conn, "j", "2")
        assert store.remove_unattended(conn, "j", "1")
        assert not store.remove_unattended(conn, "j", "1")
        assert store.list_unattended(conn) == []
