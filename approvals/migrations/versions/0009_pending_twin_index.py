"""Index requests by (agent, status, payload_sha256): find an agent's identical pending request.

A create that asks for what the same agent already has pending gets that request back
instead of a second card for the approvers. The lookup reads the agent's pending requests
with the same payload hash straight off this index; the old (agent, status) index was its
prefix and served nothing this one does not, so it is replaced, not joined.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 23:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_requests_agent_status", table_name="requests")
    op.create_index(
        "ix_requests_agent_status_payload",
        "requests",
        ["agent", "status", "payload_sha256"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_requests_agent_status_payload", table_name="requests")
    op.create_index("ix_requests_agent_status", "requests", ["agent", "status"], unique=False)
