"""Approvals with edits: the edited params on a request and the payload each vote was about.

``requests.edited_params`` and ``requests.edited_payload_sha256`` hold an approver's edit
of the params (the proposal while pending, what was approved once approved);
``votes.payload_sha256`` the hash of the payload each person voted on, so a quorum counts
only approvals of the same payload. All three are nullable: existing requests were never
edited, and their votes were all about the original payload.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 02:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns without defaults: an ADD COLUMN on both databases, no table rewrite.
    op.add_column("requests", sa.Column("edited_params", sa.JSON(), nullable=True))
    op.add_column(
        "requests", sa.Column("edited_payload_sha256", sa.String(length=64), nullable=True)
    )
    op.add_column("votes", sa.Column("payload_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("votes") as votes:
        votes.drop_column("payload_sha256")
    with op.batch_alter_table("requests") as requests:
        requests.drop_column("edited_payload_sha256")
        requests.drop_column("edited_params")
