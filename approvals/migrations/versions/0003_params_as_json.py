"""Store request params as plain JSON, so any JSON string (U+0000 included) is accepted.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 20:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite stores JSON as text already; only PostgreSQL's jsonb column changes.
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "requests", "params", type_=sa.JSON(), postgresql_using="params::text::json"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "requests",
            "params",
            type_=postgresql.JSONB(),
            postgresql_using="params::text::jsonb",
        )
