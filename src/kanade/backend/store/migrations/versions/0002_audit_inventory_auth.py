"""Audit, inventory and checks projections; users; exec hints and result expiry.

* ``executions.inventory_hint`` / ``check_hint``: the job's hints as dispatched, so the
  projector can derive facts and check statuses from results in the same batch;
* ``results.expires_at``: when an in_flight row is reaped (SPEC §4.3);
* ``audit`` (projection of KANADE_AUDIT), ``inventory`` + ``inventory_history`` and
  ``checks`` (projections of results), ``users`` (auth, SPEC §4.10; not a projection).

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(128)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("inventory_hint", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("check_hint", sa.JSON(), nullable=True))
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("expires_at", TS, nullable=True))
    op.create_index("ix_results_state_expires_at", "results", ["state", "expires_at"])

    op.create_table(
        "audit",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("action", sa.String(128), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit"),
    )
    op.create_index("ix_audit_recorded_at", "audit", ["recorded_at"])
    op.create_index("ix_audit_actor_recorded_at", "audit", ["actor", "recorded_at"])
    op.create_index("ix_audit_action_recorded_at", "audit", ["action", "recorded_at"])

    op.create_table(
        "inventory",
        sa.Column("pc_id", ID, nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("result_id", sa.String(64), nullable=False),
        sa.Column("exec_id", ID, nullable=False),
        sa.Column("observed_at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("pc_id", "job_id", name="pk_inventory"),
    )
    op.create_index("ix_inventory_job_id", "inventory", ["job_id"])

    op.create_table(
        "inventory_history",
        sa.Column("result_id", sa.String(64), nullable=False),
        sa.Column("pc_id", ID, nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("exec_id", ID, nullable=False),
        sa.Column("observed_at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("result_id", name="pk_inventory_history"),
    )
    op.create_index(
        "ix_inventory_history_pc_id_job_id_observed_at",
        "inventory_history",
        ["pc_id", "job_id", "observed_at"],
    )

    op.create_table(
        "checks",
        sa.Column("pc_id", ID, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("result_id", sa.String(64), nullable=False),
        sa.Column("exec_id", ID, nullable=False),
        sa.Column("observed_at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("pc_id", "name", name="pk_checks"),
    )
    op.create_index("ix_checks_status", "checks", ["status"])
    op.create_index("ix_checks_name", "checks", ["name"])

    op.create_table(
        "users",
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("username", name="pk_users"),
    )


def downgrade() -> None:
    op.drop_table("users")
    op.drop_table("checks")
    op.drop_table("inventory_history")
    op.drop_table("inventory")
    op.drop_table("audit")
    op.drop_index("ix_results_state_expires_at", table_name="results")
    with op.batch_alter_table("results") as batch:
        batch.drop_column("expires_at")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("check_hint")
        batch.drop_column("inventory_hint")
