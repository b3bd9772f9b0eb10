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


async def test_the_grants_migration_goes_down_and_up_again(store):
    """0011 (time-boxed grants) downgrades to 0010 and upgrades back, on both databases."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect

    from approvals.store import MIGRATIONS_DIR

    def migrate_to(sync_conn, revision: str, *, down: bool):
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection"] = sync_conn
        (command.downgrade if down else command.upgrade)(config, revision)
        inspector = inspect(sync_conn)
        votes = {column["name"] for column in inspector.get_columns("votes")}
        return inspector.has_table("grants"), "grant_seconds" in votes

    async with store.engine.begin() as conn:
        assert await conn.run_sync(migrate_to, "0010", down=True) == (False, False)
    async with store.engine.begin() as conn:
        assert await conn.run_sync(migrate_to, "head", down=False) == (True, True)
    await test_migrated_schema_matches_the_tables(store)
