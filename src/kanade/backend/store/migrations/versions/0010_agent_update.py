"""Self-update (SPEC §3.8): each agent's last reported update state (phase, target,
quarantined versions, error) from its heartbeat.

Revision ID: 0010_agent_update
Revises: 0009_auth_sessions
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_agent_update"
down_revision = "0009_auth_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("agent_update", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("agent_update")
