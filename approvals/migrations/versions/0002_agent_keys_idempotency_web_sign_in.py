"""Agent API keys, idempotency keys, web inbox sign-in tokens and sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 20:25:42.649491
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('agent_keys',
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('agent', sa.String(length=200), nullable=False),
    sa.Column('secret_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key_id')
    )
    with op.batch_alter_table('agent_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agent_keys_agent'), ['agent'], unique=False)

    op.create_table('idempotency_keys',
    sa.Column('agent', sa.String(length=200), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('body_sha256', sa.String(length=64), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('agent', 'key')
    )
    op.create_table('login_tokens',
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('person', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('token_sha256')
    )
    op.create_table('web_sessions',
    sa.Column('session_sha256', sa.String(length=64), nullable=False),
    sa.Column('person', sa.String(length=200), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('session_sha256')
    )


def downgrade() -> None:
    op.drop_table('web_sessions')
    op.drop_table('login_tokens')
    op.drop_table('idempotency_keys')
    with op.batch_alter_table('agent_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agent_keys_agent'))

    op.drop_table('agent_keys')
