"""A wiped database comes back whole (SPEC §1.3, §4.3).

* ``exec_decisions`` and ``executions.created_status``: an exec's status is derived from
  its creation, its recorded decisions and its results, so re-projection in any order gives
  the same row. Existing rows are backfilled from their current status.
* ``state_outbox``: keys of operator-state rows changed since their document was last
  written to KV ``kanade_state`` (what a wiped database is rebuilt from).
* ``agent_schedule_decisions`` / ``agent_schedule_stats``: what agents' local schedulers
  decided (fired, skipped, missed), projected from KANADE_DECISIONS.

Revision ID: 0008_rebuild_whole
Revises: 0007_exec_ends
Create Date: 2026-02-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_rebuild_whole"
down_revision = "0007_exec_ends"
branch_labels = None
depends_on = None

ID = sa.String(128)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "exec_decisions",
        sa.Column("exec_id", ID, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("at", TS, nullable=True),
        sa.Column("by", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("exec_id", "status", name="pk_exec_decisions"),
    )
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("created_status", sa.String(32), nullable=True))
    # What the rows say today becomes the facts they are derived from from now on.
    op.execute(
        "UPDATE executions SET created_status = CASE WHEN status IN "
        "('awaiting_approval', 'rejected') THEN 'awaiting_approval' ELSE 'pending' END"
    )
    op.execute(
        "INSERT INTO exec_decisions (exec_id, status, at, by) "
        "SELECT exec_id, status, updated_at, NULL FROM executions "
        "WHERE status IN ('cancelled', 'rejected', 'expired')"
    )


    op.create_table(
        "state_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("ref", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_state_outbox"),
        sqlite_autoincrement=True,  # ids are never reused: each is a document's seq
    )
    op.create_index("ix_state_outbox_key", "state_outbox", ["key"])
    op.create_table(
        "agent_schedule_decisions",
        sa.Column("decision_id", sa.String(512), nullable=False),
        sa.Column("schedule_id", ID, nullable=False),
        sa.Column("pc_id", ID, nullable=False),
        sa.Column("occurrence_id", sa.String(255), nullable=False),
        sa.Column("nominal_time", TS, nullable=True),
        sa.Column("decided_at", TS, nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("decision_id", name="pk_agent_schedule_decisions"),
    )
    op.create_index(
        "ix_agent_schedule_decisions_schedule_id_recorded_at",
        "agent_schedule_decisions",
        ["schedule_id", "recorded_at"],
    )
    op.create_table(
        "agent_schedule_stats",
        sa.Column("schedule_id", ID, nullable=False),
        sa.Column("pc_id", ID, nullable=False),
        sa.Column("epoch", sa.String(64), nullable=False),
        sa.Column("fired", sa.BigInteger(), nullable=False),
        sa.Column("skipped", sa.BigInteger(), nullable=False),
        sa.Column("missed", sa.BigInteger(), nullable=False),
        sa.Column("last_fire_at", TS, nullable=True),
        sa.Column("last_nominal", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("schedule_id", "pc_id", "epoch", name="pk_agent_schedule_stats"),
    )


def downgrade() -> None:
    op.drop_table("agent_schedule_stats")
    op.drop_index(
        "ix_agent_schedule_decisions_schedule_id_recorded_at",
        table_name="agent_schedule_decisions",
    )
    op.drop_table("agent_schedule_decisions")
    op.drop_index("ix_state_outbox_key", table_name="state_outbox")
    op.drop_table("state_outbox")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("created_status")
    op.drop_table("exec_decisions")
