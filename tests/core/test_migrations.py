"""Migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from approvals.tables import metadata


async def test_migrated_schema_matches_the_tables(store):
    def differences(sync_conn):
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(context, metadata)

    async with store.engine.connect() as conn:
        diff = await conn.run_sync(differences)
    assert diff == []


async def test_migrating_twice_changes_nothing(store):
    await store.migrate()
    verification = await store.verify_audit()
    assert verification.ok
    assert verification.checked == 0
