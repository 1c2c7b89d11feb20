"""The central scheduler's bookkeeping (SPEC §4.4, §4.6).

* ``schedule_stats``: fired / skipped / missed counters and the last fire per schedule;
* ``schedule_decisions``: recent decisions with their reason (deadline, freeze, window …);
* indexes for the scheduler's reads: ``executions(schedule_id, status)`` and
  ``results(schedule_id, pc_id)``.

``executions.initiated_by`` / ``schedule_id`` / ``nominal_time`` already exist (0001).

Revision ID: 0003_scheduler
Revises: 0002
Create Date: 2026-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_scheduler"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(128)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "schedule_stats",
        sa.Column("schedule_id", ID, nullable=False),
        sa.Column("fired", sa.BigInteger(), nullable=False),
        sa.Column("skipped", sa.BigInteger(), nullable=False),
        sa.Column("missed", sa.BigInteger(), nullable=False),
        sa.Column("last_fire_at", TS, nullable=True),
        sa.Column("last_nominal", TS, nullable=True),
        sa.Column("last_exec_id", ID, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("schedule_id", name="pk_schedule_stats"),
    )
    op.create_table(
        "schedule_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("schedule_id", ID, nullable=False),
        sa.Column("occurrence_id", sa.String(255), nullable=False),
        sa.Column("nominal_time", TS, nullable=True),
        sa.Column("decided_at", TS, nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("exec_id", ID, nullable=True),
        sa.Column("pcs", sa.Integer(), nullable=True),
        sa.Column("lateness_s", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_schedule_decisions"),
    )
    op.create_index(
        "ix_schedule_decisions_schedule_id_id", "schedule_decisions", ["schedule_id", "id"]
    )
    op.create_index("ix_executions_schedule_id_status", "executions", ["schedule_id", "status"])
    op.create_index("ix_results_schedule_id_pc_id", "results", ["schedule_id", "pc_id"])


def downgrade() -> None:
    op.drop_index("ix_results_schedule_id_pc_id", table_name="results")
    op.drop_index("ix_executions_schedule_id_status", table_name="executions")
    op.drop_index("ix_schedule_decisions_schedule_id_id", table_name="schedule_decisions")
    op.drop_table("schedule_decisions")
    op.drop_table("schedule_stats")
