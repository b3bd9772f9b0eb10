"""Alembic environment: migrates the connection the store hands in, or a URL from alembic.ini."""

from alembic import context
from sqlalchemy import create_engine

from approvals.tables import metadata

config = context.config
target_metadata = metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        # SqlStore.migrate(): the caller owns the connection and its transaction.
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    # Developers writing a new revision: `alembic revision --autogenerate` with alembic.ini.
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///migrations.db")
    with engine.connect() as sync_connection:
        context.configure(
            connection=sync_connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
