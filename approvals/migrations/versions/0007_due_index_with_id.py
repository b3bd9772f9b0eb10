"""Index due requests by (status, next_due_at, id): the sweeper's order, read off the index.

The sweeper claims pending requests oldest due first, ties broken by id. With the index on
(status, next_due_at) alone, SQLite sorted every due row to find the first batch, so a
backlog that fell due at one moment cost a sort of the whole backlog per batch.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_requests_due", table_name="requests")
    op.create_index("ix_requests_due", "requests", ["status", "next_due_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_requests_due", table_name="requests")
    op.create_index("ix_requests_due", "requests", ["status", "next_due_at"], unique=False)
