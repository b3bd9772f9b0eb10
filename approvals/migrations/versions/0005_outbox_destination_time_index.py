"""Index outbox rows by destination and time, for the flood guard's per-minute count.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_outbox_destination_created", "outbox", ["destination", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_destination_created", table_name="outbox")
