"""The agent's disk in its heartbeat (SPEC §7: a full disk is reported): ``agents`` gains
``disk_full``, ``disk_error``, ``disk_free_bytes`` and ``held_messages``.

Revision ID: 0006_agent_disk
Revises: 0005_enrolment
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_agent_disk"
down_revision = "0005_enrolment"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(
            sa.Column("disk_full", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("disk_error", sa.String(200), nullable=True))
        batch.add_column(sa.Column("disk_free_bytes", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("held_messages", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("held_messages")
        batch.drop_column("disk_free_bytes")
        batch.drop_column("disk_error")
        batch.drop_column("disk_full")
