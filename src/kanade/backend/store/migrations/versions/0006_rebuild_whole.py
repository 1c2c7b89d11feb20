"""A wiped database comes back whole (SPEC §1.3, §4.3).

* ``exec_decisions`` and ``executions.created_status``: an exec's status is derived from
  its creation, its recorded decisions and its results, so re-projection in any order gives
  the same row. Existing rows are backfilled from their current status.
* ``state_outbox``: keys of operator-state rows changed since their document was last
  written to KV ``kanade_state`` (what a wiped database is rebuilt from).

Revision ID: 0006_rebuild_whole
Revises: 0005_enrolment
Create Date: 2026-02-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_rebuild_whole"
down_revision = "0005_enrolment"
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


def downgrade() -> None:
    op.drop_index("ix_state_outbox_key", table_name="state_outbox")
    op.drop_table("state_outbox")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("created_status")
    op.drop_table("exec_decisions")
