"""The agent's own settings in its heartbeat (SPEC §3.7, §5): ``agents`` gains
``local_config`` — the values it was started with (flags, config file) where they differ
from the built-in defaults — so ``config effective`` shows what the agent really applies,
and ``static_groups`` — the groups of its own ``--group`` flags, which no KV change
removes (``group rm`` says so).

Revision ID: 0013_cliux_agent_local_config
Revises: 0012_retention
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_cliux_agent_local_config"
down_revision = "0012_retention"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("local_config", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("static_groups", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("static_groups")
        batch.drop_column("local_config")
