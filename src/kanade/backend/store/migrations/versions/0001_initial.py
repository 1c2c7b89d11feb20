"""Initial projection schema: agents, executions, results, projection_state.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(128)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("pc_id", ID, nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("agent_version", sa.String(64), nullable=False),
        sa.Column("os_family", sa.String(32), nullable=False),
        sa.Column("os_version", sa.String(255), nullable=False),
        sa.Column("boot_time", TS, nullable=True),
        sa.Column("cpu_percent", sa.Float(), nullable=False),
        sa.Column("rss_bytes", sa.BigInteger(), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("schedule_set_version", sa.String(128), nullable=True),
        sa.Column("last_command_at", TS, nullable=True),
        sa.Column("queue_length", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.PrimaryKeyConstraint("pc_id", name="pk_agents"),
    )
    op.create_index("ix_agents_last_seen", "agents", ["last_seen"])

    op.create_table(
        "executions",
        sa.Column("exec_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("expected_pcs", sa.JSON(), nullable=False),
        sa.Column("expected_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("initiated_by", sa.String(128), nullable=False),
        sa.Column("schedule_id", ID, nullable=True),
        sa.Column("nominal_time", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("started_count", sa.Integer(), nullable=False),
        sa.Column("finished_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("skipped_count", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("exec_id", name="pk_executions"),
    )
    op.create_index("ix_executions_created_at", "executions", ["created_at"])
    op.create_index("ix_executions_job_id_created_at", "executions", ["job_id", "created_at"])
    op.create_index("ix_executions_status_created_at", "executions", ["status", "created_at"])

    op.create_table(
        "results",
        sa.Column("result_id", sa.String(64), nullable=False),
        sa.Column("exec_id", ID, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("pc_id", ID, nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("skipped", sa.Boolean(), nullable=False),
        sa.Column("stdout", sa.Text(), nullable=False),
        sa.Column("stderr", sa.Text(), nullable=False),
        sa.Column("stdout_bytes", sa.BigInteger(), nullable=False),
        sa.Column("stderr_bytes", sa.BigInteger(), nullable=False),
        sa.Column("stdout_ref", sa.String(255), nullable=True),
        sa.Column("stderr_ref", sa.String(255), nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("schedule_id", ID, nullable=True),
        sa.Column("nominal_time", TS, nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("timeout_s", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("result_id", name="pk_results"),
    )
    op.create_index("ix_results_exec_id_pc_id", "results", ["exec_id", "pc_id"])
    op.create_index("ix_results_pc_id_recorded_at", "results", ["pc_id", "recorded_at"])
    op.create_index("ix_results_job_id_recorded_at", "results", ["job_id", "recorded_at"])
    op.create_index("ix_results_recorded_at", "results", ["recorded_at"])
    op.create_index("ix_results_state_recorded_at", "results", ["state", "recorded_at"])

    op.create_table(
        "projection_state",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_projection_state"),
    )


def downgrade() -> None:
    op.drop_table("projection_state")
    op.drop_table("results")
    op.drop_table("executions")
    op.drop_table("agents")
