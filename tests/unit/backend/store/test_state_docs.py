"""Operator state ⇄ KV documents (kanade.backend.store.state_docs / state_outbox), on real
SQLite files: every change leaves an outbox entry in its own transaction, a document read
from one database restores the very same rows into an empty one, never over a row that is
already there, and outbox ids (a document's ``seq``) are never reused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from store_rows import job_command
from test_rollouts import _create

from kanade.backend.store import (
    approvals,
    enrolment,
    rollouts,
    scheduling,
    state_docs,
    state_outbox,
    users,
    webhooks,
)
from kanade.backend.store.database import create_engine, database_url
from kanade.backend.store.migrate import upgrade_sync
from kanade.backend.store.scheduling import DecisionRow
from kanade.backend.store.tables import rollout_waves
from kanade.backend.store.tables import state_outbox as outbox_table
from kanade.core.models.opstate import StateDoc
from kanade.core.models.records import ExecRecord
from kanade.core.models.wire import decode

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _fresh(tmp_path: Path, name: str) -> Engine:
    url = database_url(str(tmp_path / name))
    upgrade_sync(url)
    return create_engine(url)


def _write_everything(engine: Engine) -> None:
    _create(engine, "r1")
    record = ExecRecord(
        exec_id="e1", kind="job", job_id="j", version="1.0+b", target={"all": True},
        expected_pcs=["pc-1"], expected_count=1, created_at=T0, request_id="q",
        status="awaiting_approval",
    )  # fmt: skip
    with engine.begin() as conn:
        users.add_user(conn, username="a.b@c", password_hash="$argon2id$x", role="admin",
                       now=T0, created_by="setup")  # fmt: skip
        approvals.create_request(
            conn, record=record, command=job_command("e1", T0), subs=["kanade.cmd.all.j"],
            starting_deadline_s=None, rollout=False, ttl=timedelta(hours=1), now=T0,
        )  # fmt: skip
        approvals.add_unattended(conn, "j", "1.0+b", "ops", T0)
        rollouts.claim(conn, "r1", 0, "{}", T0 + timedelta(seconds=1), takeover_before=None)
        enrolment.insert_token(conn, token_id="t1", token_sha256="ab" * 32, groups=["web"],
                               created_by="ops", created_at=T0,
                               expires_at=T0 + timedelta(hours=1))  # fmt: skip
        enrolment.put_enrolled(conn, pc_id="pc-1", public_key="U" + "A" * 55, token_id="t1",
                               now=T0)  # fmt: skip
        enrolment.mark_revoked(conn, "pc-1", now=T0, by="ops")
        scheduling.record_decisions(
            conn,
            [DecisionRow("s1", "s1@1", T0, "fired", None, "ok", exec_id="x", pcs=1),
             DecisionRow("s1", "s1@2", T0, "missed", "catchup_skip", "2", count=2)],
            T0,
        )  # fmt: skip
        webhooks.add_webhook(conn, {
            "webhook_id": "ops", "kind": "generic", "url": "https://hooks.example/x",
            "secret": "s" * 32, "events": ["exec.failed"], "enabled": True,
            "offline_after_s": 600.0, "created_at": T0, "created_by": "ops",
            "updated_at": T0, "updated_by": "ops",
        })  # fmt: skip


def _docs(engine: Engine, gen: int = 1) -> list[StateDoc]:
    with engine.begin() as conn:
        out = []
        for p in state_outbox.pending(conn, 100):
            rows = state_docs.snapshot(conn, p.kind, p.ref)
            out.append(StateDoc(kind=p.kind, ref=list(p.ref), gen=gen, seq=p.seq,  # type: ignore[arg-type]
                                deleted=rows is None, rows=rows or {}))  # fmt: skip
        return out


def _rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    with engine.connect() as conn:
        return {
            kind.main.name: [dict(r) for r in conn.execute(select(kind.main)).mappings()]
            for kind in state_docs.KINDS.values()
        }


def test_a_document_restores_the_same_rows_into_an_empty_database(
    engine: Engine, tmp_path: Path
) -> None:
    _write_everything(engine)
    docs = _docs(engine)
    assert sorted(d.kind for d in docs) == ["approval", "enroll_token", "enrolled", "rollout",
                                            "schedule", "unattended", "user",
                                            "webhook"]  # fmt: skip
    assert all(d.key == d.key.strip() and " " not in d.key for d in docs)
    other = _fresh(tmp_path, "other.db")
    with other.begin() as conn:
        for doc in docs:  # through the wire form, as the bucket holds them
            assert state_docs.restore(conn, decode(StateDoc, doc.encode()))
    assert _rows(other) == _rows(engine)
    with other.begin() as conn:  # again: nothing is written twice
        assert not any(state_docs.restore(conn, d) for d in docs)
    with other.connect() as conn, engine.connect() as conn0:
        # Typed selects: the source may be PostgreSQL and the copy SQLite (a document is
        # dialect-neutral), so raw rows would differ in how JSON and times come back.
        waves = select(rollout_waves).order_by(rollout_waves.c.idx)
        assert [tuple(r) for r in conn.execute(waves)] == [tuple(r) for r in conn0.execute(waves)]
        log = "SELECT schedule_id, occurrence_id, result, reason, detail FROM schedule_decisions"
        assert [tuple(r) for r in conn.exec_driver_sql(log)] == [
            tuple(r) for r in conn0.exec_driver_sql(log)
        ]


def test_restore_never_writes_over_a_row_the_database_has(engine: Engine, tmp_path: Path) -> None:
    _write_everything(engine)
    docs = [d for d in _docs(engine) if d.kind == "user"]
    other = _fresh(tmp_path, "other.db")
    with other.begin() as conn:
        users.add_user(conn, username="a.b@c", password_hash="newer", role="viewer", now=T0,
                       created_by="here")  # fmt: skip
        assert not state_docs.restore(conn, docs[0])
        assert users.get_user(conn, "a.b@c")["password_hash"] == "newer"  # type: ignore[index]


def test_a_deleted_row_becomes_a_tombstone(engine: Engine) -> None:
    with engine.begin() as conn:
        users.add_user(conn, username="gone", password_hash="h", role="viewer", now=T0,
                       created_by="x")  # fmt: skip
        assert users.delete_user(conn, "gone")
    [doc] = _docs(engine)
    assert doc.deleted and doc.rows == {}


def test_outbox_ids_are_never_reused(engine: Engine) -> None:
    with engine.begin() as conn:
        state_outbox.touch(conn, "user", "a")
        [first] = state_outbox.pending(conn, 10)
        state_outbox.done(conn, [first])
        assert state_outbox.backlog(conn) == 0
        state_outbox.touch(conn, "user", "a")
        [second] = state_outbox.pending(conn, 10)
    assert second.seq > first.seq  # an emptied table does not restart at 1


def test_a_change_made_while_a_document_is_written_stays_pending(engine: Engine) -> None:
    with engine.begin() as conn:
        state_outbox.touch(conn, "user", "a")
        [seen] = state_outbox.pending(conn, 10)
        state_outbox.touch(conn, "user", "a")  # changed again meanwhile
        state_outbox.done(conn, [seen])
        left = conn.execute(select(outbox_table.c.id)).all()
    assert len(left) == 1 and left[0][0] > seen.seq
