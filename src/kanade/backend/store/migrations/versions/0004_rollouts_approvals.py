"""Durable rollouts and approvals (SPEC §4.7, §4.8).

* ``rollouts`` / ``rollout_waves``: a rollout's state and each wave's pcs (fixed at
  creation), due time, claim, the exact command published and the settled counts;
* ``approvals``: an exec waiting for a second operator (or decided, or expired);
* ``unattended_approvals``: job versions a schedule may fire although the job has
  ``require_approval: true``.

Revision ID: 0004_rollouts_approvals
Revises: 0003_scheduler
Create Date: 2026-01-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_rollouts_approvals"
down_revision = "0003_scheduler"
branch_labels = None
depends_on = None

ID = sa.String(128)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("rollout_id", ID, nullable=False),
        sa.Column("exec_id", ID, nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("halt_on_failure_rate", sa.Float(), nullable=True),
        sa.Column("current_wave", sa.Integer(), nullable=False),
        sa.Column("wave_count", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("starting_deadline_s", sa.Float(), nullable=True),
        sa.Column("settle_after_s", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("rollout_id", name="pk_rollouts"),
    )
    op.create_index("ix_rollouts_status", "rollouts", ["status"])
    op.create_table(
        "rollout_waves",
        sa.Column("rollout_id", ID, nullable=False),
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("pcs", sa.JSON(), nullable=False),
        sa.Column("delay_s", sa.Float(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("due_at", TS, nullable=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("claimed_at", TS, nullable=True),
        sa.Column("dispatched_at", TS, nullable=True),
        sa.Column("settled_at", TS, nullable=True),
        sa.Column("succeeded", sa.Integer(), nullable=True),
        sa.Column("failed", sa.Integer(), nullable=True),
        sa.Column("skipped", sa.Integer(), nullable=True),
        sa.Column("missing", sa.Integer(), nullable=True),
        sa.Column("failure_rate", sa.Float(), nullable=True),
        sa.Column("verdict", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("rollout_id", "idx", name="pk_rollout_waves"),
    )
    op.create_table(
        "approvals",
        sa.Column("exec_id", ID, nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("subjects", sa.JSON(), nullable=False),
        sa.Column("starting_deadline_s", sa.Float(), nullable=True),
        sa.Column("rollout", sa.Boolean(), nullable=False),
        sa.Column("dispatched_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("exec_id", name="pk_approvals"),
    )
    op.create_index("ix_approvals_state_expires_at", "approvals", ["state", "expires_at"])
    op.create_table(
        "unattended_approvals",
        sa.Column("job_id", ID, nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("approved_by", sa.String(128), nullable=False),
        sa.Column("approved_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("job_id", "version", name="pk_unattended_approvals"),
    )


def downgrade() -> None:
    op.drop_table("unattended_approvals")
    op.drop_index("ix_approvals_state_expires_at", table_name="approvals")
    op.drop_table("approvals")
    op.drop_table("rollout_waves")
    op.drop_index("ix_rollouts_status", table_name="rollouts")
    op.drop_table("rollouts")
