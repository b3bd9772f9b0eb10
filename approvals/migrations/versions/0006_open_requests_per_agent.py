"""Count each agent's pending requests in a row of its own, kept by every transition.

``max_open`` is checked on every create; counting the agent's pending rows each time costs
time that grows with the count. The writer keeps this number as it inserts and finishes
requests instead.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "open_requests",
        sa.Column("agent", sa.String(length=200), primary_key=True),
        sa.Column("open", sa.Integer(), nullable=False),
    )
    op.execute(
        "INSERT INTO open_requests (agent, open) "
        "SELECT agent, COUNT(*) FROM requests WHERE status = 'pending' GROUP BY agent"
    )


def downgrade() -> None:
    op.drop_table("open_requests")
