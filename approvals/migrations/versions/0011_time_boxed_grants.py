"""Time-boxed grants: the ``grants`` table and the grant length each vote asked for.

A grant row says that one agent's later requests for one action, with the same matched
params (``match_key``, the SHA-256 of their canonical JSON), are approved at once until
``expires_at``, unless revoked first. ``votes.grant_seconds`` is the length of the grant an
approver asked to give with an approval ("Approve for 1 h"); it is nullable, since every
existing vote asked for none.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("policy_name", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=200), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.Column("match_key", sa.String(length=64), nullable=False),
        sa.Column("match_paths", sa.JSON(), nullable=False),
        sa.Column("matched", sa.JSON(), nullable=False),
        sa.Column("given_by", sa.JSON(), nullable=False),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_request_id", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=200), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_grants_lookup", "grants", ["agent", "action", "match_key", "expires_at"], unique=False
    )
    op.create_index("ix_grants_expires", "grants", ["expires_at"], unique=False)
    op.add_column("votes", sa.Column("grant_seconds", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("votes") as votes:
        votes.drop_column("grant_seconds")
    op.drop_index("ix_grants_expires", table_name="grants")
    op.drop_index("ix_grants_lookup", table_name="grants")
    op.drop_table("grants")
