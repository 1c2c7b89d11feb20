"""Every exec ends (SPEC §4.3) and a clean agent stop is seen at once.

* ``executions.deadline_at``: the exec's deadline; expected pcs that never started are
  closed as ``no_result`` once it has passed (``results.state`` gains that value, a string
  column: no schema change; ``executions.no_result_count`` counts them);
  ``executions.ended_at``: when that was done for good;
* ``agents.stopped_at``: set by the heartbeat of an agent that stops cleanly (offline at
  once), cleared by its next heartbeat.

Revision ID: 0007_exec_ends
Revises: 0005_enrolment
Create Date: 2026-02-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_exec_ends"
down_revision = "0006_agent_disk"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("deadline_at", TS, nullable=True))
        batch.add_column(sa.Column("ended_at", TS, nullable=True))
        batch.add_column(
            sa.Column("no_result_count", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_index(
        "ix_executions_ended_at_deadline_at", "executions", ["ended_at", "deadline_at"]
    )
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("stopped_at", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("stopped_at")
    op.drop_index("ix_executions_ended_at_deadline_at", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("no_result_count")
        batch.drop_column("ended_at")
        batch.drop_column("deadline_at")
