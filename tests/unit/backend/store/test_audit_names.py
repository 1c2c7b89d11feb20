"""Audit rows written under the old names are renamed by revision 0014 (the projector
renames records still in the stream the same way)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import select

from kanade.backend.store.database import create_engine, database_url
from kanade.backend.store.migrate import alembic_config, upgrade_sync
from kanade.backend.store.tables import audit

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
OLD = [
    "put_job",
    "exec",
    "user_add",
    "freeze_set",
    "rollout_halted",
    "ping_agent",
    "login_failed",
    "script_upload",
    "job_approval_lowered",
    "mystery",
]


def test_old_audit_names_become_the_per_verb_names(tmp_path: Path) -> None:
    url = database_url(str(tmp_path / "old.db"))
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0013_cliux_agent_local_config")
            conn.execute(
                audit.insert(),
                [
                    {"seq": i, "action": a, "actor": "root", "at": AT, "details": {},
                     "recorded_at": AT}
                    for i, a in enumerate(OLD, 1)
                ],
            )  # fmt: skip
        upgrade_sync(url)
        with engine.connect() as conn:
            got = [r[0] for r in conn.execute(select(audit.c.action).order_by(audit.c.seq))]
    finally:
        engine.dispose()
    assert got == [
        "job.put",
        "exec.create",
        "user.create",
        "freeze.set",
        "rollout.halt",
        "agent.ping",
        "user.login_fail",
        "script.upload",
        "job.approval_lower",
        "mystery",  # unknown names are left alone
    ]
