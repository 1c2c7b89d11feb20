"""Enrolment (SPEC §8.1): ``enroll_tokens`` (one-time tokens, stored as a sha256 only)
and ``enrolled_agents`` (each pc's broker identity and whether it is revoked).

Revision ID: 0005_enrolment
Revises: 0004_rollouts_approvals
Create Date: 2026-01-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_enrolment"
down_revision = "0004_rollouts_approvals"
branch_labels = None
depends_on = None

ID = sa.String(128)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "enroll_tokens",
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.Column("used_by_pc", ID, nullable=True),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("token_id", name="pk_enroll_tokens"),
        sa.UniqueConstraint("token_sha256", name="uq_enroll_tokens_token_sha256"),
    )
    op.create_table(
        "enrolled_agents",
        sa.Column("pc_id", ID, nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("enrolled_at", TS, nullable=False),
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_by", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("pc_id", name="pk_enrolled_agents"),
    )


def downgrade() -> None:
    op.drop_table("enrolled_agents")
    op.drop_table("enroll_tokens")
