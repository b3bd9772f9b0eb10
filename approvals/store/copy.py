"""Move a SQLite signoff database into an empty PostgreSQL database (``signoff db copy``).

Every table of the schema (:data:`approvals.tables.metadata`, in foreign-key order; not
Alembic's version table, which the target's own migration writes) is read from one
snapshot of the SQLite database and written to PostgreSQL in batches, all in one
PostgreSQL transaction that first brings the target's schema to the newest revision.
Before that transaction commits, the copy checks itself: each table holds as many rows as
the snapshot did, and the audit chain verifies on the target. Anything wrong rolls the
whole transaction back, so the target holds either the complete, verified copy or nothing
of it.

Values pass through the tables' own column types, read the SQLite way and written the
PostgreSQL way: naive UTC text becomes ``timestamptz``, SQLite's 0/1 a boolean, and ids and
blobs are kept as they are. JSON columns are copied as the text SQLite holds, cast to
``json``/``jsonb`` by PostgreSQL, so a SQL NULL stays NULL and a JSON ``null`` stays
``null``, and a ``json`` column keeps its exact text.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import (
    Column,
    Integer,
    Table,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    type_coerce,
)
from sqlalchemy.engine import Connection, RowMapping, make_url
from sqlalchemy.engine.result import MappingResult
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import JSON

from approvals.store.backup import sqlite_path
from approvals.store.database import (
    MIGRATIONS_DIR,
    _sqlite_engine,
    async_database_url,
    migrate_in,
    verify_audit_in,
)
from approvals.store.reads import Reads
from approvals.tables import AUDIT_HEAD, metadata

T = TypeVar("T")

COPY_BATCH = 1000
"""Rows read and written per round trip: a big table is never held in memory whole."""

CONNECT_TIMEOUT = 15.0
"""Seconds to wait for the PostgreSQL server to answer before giving up."""

LOCK_TIMEOUT = 30.0
"""Seconds the copy waits for a lock on the target (another process migrating it, or a
transaction on one of its tables) before it gives up."""

_JSON_SUFFIX = "__json_text"
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock timeout


class CopyError(Exception):
    """The copy was refused or failed; the target holds none of it."""


class CopyCheckError(CopyError):
    """The copy was written but did not check out (row counts, the audit chain), so it was
    rolled back; the target holds none of it."""


@dataclass(frozen=True)
class CopiedTable:
    """One table of the copy and how many rows it holds (on both sides)."""

    name: str
    rows: int


@dataclass(frozen=True)
class CopyResult:
    """What a copy wrote and what it checked.

    Attributes:
        tables: every table copied, in the order copied.
        audit_entries: the audit entries verified on the target.
        seconds: how long the copy took, from opening the snapshot to the commit.
        source_changed: the SQLite database was written to after the snapshot was taken;
            those changes are not in the copy.
    """

    tables: tuple[CopiedTable, ...]
    audit_entries: int
    seconds: float
    source_changed: bool

    @property
    def rows(self) -> int:
        return sum(table.rows for table in self.tables)


def display_url(url: str) -> str:
    """``url`` fit for printing: a password (in the address or the query) shows as ``***``."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        scheme, separator, rest = url.partition("://")
        credentials, at, host = rest.rpartition("@")
        if not at or ":" not in credentials:
            return url
        return f"{scheme}{separator}{credentials.split(':', 1)[0]}:***@{host}"
    query = {key: value for key, value in parsed.query.items() if key.lower() != "password"}
    return parsed.set(query=query).render_as_string(hide_password=True)


def postgresql_target(url: str) -> str:
    """The asyncpg URL of a PostgreSQL target given as ``postgresql://``, ``postgres://``
    or ``postgresql+asyncpg://``.

    Raises:
        CopyError: not a PostgreSQL URL, or one that names no database.
    """
    try:
        driver_url = async_database_url(url)
        parsed = make_url(driver_url)
    except (ArgumentError, ValueError) as exc:
        raise CopyError(
            f"{display_url(url)}: not a PostgreSQL URL; write postgresql://user@host/dbname"
        ) from exc
    if parsed.get_backend_name() != "postgresql":
        raise CopyError(
            f"{display_url(url)}: the copy goes to PostgreSQL; write postgresql://user@host/dbname"
        )
    if not parsed.database:
        raise CopyError(f"{display_url(url)}: name the database: postgresql://user@host/dbname")
    return driver_url


async def copy_sqlite_to_postgresql(
    source_url: str,
    target_url: str,
    *,
    batch: int = COPY_BATCH,
    busy_timeout: float = 15.0,
    lock_timeout: float = LOCK_TIMEOUT,
) -> CopyResult:
    """Copy every table of the SQLite database at ``source_url`` into the PostgreSQL
    database at ``target_url``, which must hold no signoff data; check the copy (row
    counts, audit chain) before committing it. The service may keep running on the source
    meanwhile: the copy is the database as it was when the copy began.

    Raises:
        CopyCheckError: the copy did not check out (nothing of it was kept).
        CopyError: the source is not a current signoff SQLite database, the target is not
            an empty PostgreSQL database, or a database failed (nothing was kept).
    """
    driver_url = postgresql_target(target_url)
    path = sqlite_path(source_url)
    if path is None:
        raise CopyError(f"{display_url(source_url)}: the source must be SQLite (sqlite:///FILE)")
    if not path.is_file():
        raise CopyError(f"{path}: no such database")
    where = display_url(target_url)
    started = time.monotonic()
    snapshot = _Snapshot(path, busy_timeout)
    try:
        copier = _Copier(snapshot, await snapshot.open(), batch, target_url, lock_timeout)
        engine = create_async_engine(
            driver_url, poolclass=NullPool, connect_args={"timeout": CONNECT_TIMEOUT}
        )
        try:
            conn = engine.connect()
            try:
                await conn.start()
            except (SQLAlchemyError, OSError) as exc:
                raise CopyError(f"cannot connect to {where}: {_reason(exc, target_url)}") from exc
            try:
                async with conn.begin():  # one transaction: all of the copy, or nothing
                    await copier.run(conn)
            except (SQLAlchemyError, OSError) as exc:
                reason = _reason(exc, target_url)
                if getattr(getattr(exc, "orig", None), "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                    reason += " (another process holds a lock there: is signoff running on it?)"
                raise CopyError(f"{where}: {reason}; nothing was kept") from exc
            finally:
                await conn.close()
        finally:
            await engine.dispose()
        seconds = time.monotonic() - started
        changed = await snapshot.changed_since()
    finally:
        await snapshot.close()
    return CopyResult(tuple(copier.copied), copier.audit_entries, seconds, changed)


class _Copier:
    """The work done inside the target's one transaction."""

    def __init__(
        self,
        snapshot: _Snapshot,
        counts: Mapping[str, int],
        batch: int,
        target_url: str,
        lock_timeout: float,
    ) -> None:
        self._snapshot = snapshot
        self._counts = counts
        self._batch = batch
        self._target_url = target_url
        self._lock_timeout = lock_timeout
        self.copied: list[CopiedTable] = []
        self.audit_entries = 0

    async def run(self, conn: AsyncConnection) -> None:
        where = display_url(self._target_url)
        tables = metadata.sorted_tables  # parents before children: foreign keys hold
        try:
            # Wait for others' locks (a process migrating, a transaction on a table) a
            # while, not for ever.
            milliseconds = max(1, round(self._lock_timeout * 1000))
            await conn.execute(text(f"SET LOCAL lock_timeout = {milliseconds}"))
            await migrate_in(conn)
            # Nobody else writes signoff's tables on the target until the copy commits
            # (reads go on): the emptiness check below stays true.
            names = ", ".join(conn.dialect.identifier_preparer.format_table(t) for t in tables)
            await conn.execute(text(f"LOCK TABLE {names} IN EXCLUSIVE MODE"))
            occupied = await _tables_with_data(conn, tables)
        except CommandError as exc:
            raise CopyError(f"{where}: cannot bring its schema up to date: {exc}") from exc
        if occupied:
            raise CopyError(
                f"{where} already holds signoff data (in {', '.join(occupied)}); copy into "
                "an empty database, such as a new one made with createdb"
            )
        # The migration starts the chain at its genesis head; the copy brings the source's.
        await conn.execute(delete(AUDIT_HEAD))
        for table in tables:
            try:
                rows = await self._copy_table(conn, table)
            except SQLAlchemyError as exc:
                raise CopyError(
                    f"copying table {table.name} failed: {_reason(exc, self._target_url)}; "
                    "nothing was kept"
                ) from exc
            self.copied.append(CopiedTable(table.name, rows))
        await _restart_sequences(conn, tables)
        await self._check(conn, tables)

    async def _copy_table(self, conn: AsyncConnection, table: Table) -> int:
        statement = _insert_statement(table)
        await self._snapshot.start(table)
        written = 0
        rows = await self._snapshot.fetch(self._batch)
        while rows:
            # SQLite reads the next batch (on the snapshot's thread) while PostgreSQL writes
            # this one.
            following = asyncio.ensure_future(self._snapshot.fetch(self._batch))
            try:
                await conn.execute(statement, rows)
            except BaseException:
                following.cancel()
                raise
            written += len(rows)
            rows = await following
        return written

    async def _check(self, conn: AsyncConnection, tables: Sequence[Table]) -> None:
        for table, copied in zip(tables, self.copied, strict=True):
            on_target = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            expected = self._counts[table.name]
            if not expected == copied.rows == on_target:
                raise CopyCheckError(
                    f"table {table.name}: {expected:,} rows in the source, {copied.rows:,} "
                    f"copied, {on_target:,} on the target; nothing was kept"
                )
        verification = await verify_audit_in(Reads(conn))
        if verification.broken is not None:
            raise CopyCheckError(
                f"the copied audit chain breaks at entry {verification.broken.seq}: "
                f"{verification.broken.reason} (run `signoff audit verify` on the source); "
                "nothing was kept"
            )
        self.audit_entries = verification.checked


async def _tables_with_data(conn: AsyncConnection, tables: Sequence[Table]) -> list[str]:
    """The tables holding signoff data; a chain head still at its genesis is no data."""
    occupied: list[str] = []
    for table in tables:
        query = select(literal(1)).select_from(table)
        if table is AUDIT_HEAD:
            query = query.where(AUDIT_HEAD.c.seq != 0)
        if (await conn.execute(query.limit(1))).first() is not None:
            occupied.append(table.name)
    return occupied


async def _restart_sequences(conn: AsyncConnection, tables: Sequence[Table]) -> None:
    """Set each serial column's sequence past the largest id copied, so that the next row
    signoff writes there gets a new id. (``setval`` is not undone by a rollback; a failed
    copy leaves at most a sequence further on, which costs nothing.)"""
    for table in tables:
        quoted = conn.dialect.identifier_preparer.format_table(table)
        for column in table.columns:
            if not isinstance(column.type, Integer):
                continue
            sequence = (
                await conn.execute(select(func.pg_get_serial_sequence(quoted, column.name)))
            ).scalar_one()
            if sequence is None:
                continue
            largest = func.max(column)
            await conn.execute(
                select(
                    func.setval(sequence, func.coalesce(largest, 1), largest.is_not(None))
                ).select_from(table)
            )


def _is_json(column: Column[Any]) -> bool:
    return isinstance(column.type, JSON)


def _insert_statement(table: Table) -> Insert:
    """The insert for one batch of ``table``: JSON columns take their text, cast by the
    database; every other column takes its value through its type."""
    json_values = {
        column.name: cast(bindparam(column.name + _JSON_SUFFIX, type_=Text), column.type)
        for column in table.columns
        if _is_json(column)
    }
    return insert(table).values(json_values) if json_values else insert(table)


def _json_text(value: Any) -> str | None:
    # SQLite's JSON columns have numeric affinity: a top-level number is stored as one.
    return value if value is None or isinstance(value, str) else json.dumps(value)


class _Snapshot:
    """One read transaction on the SQLite database, on a thread of its own.

    Why a read transaction: signoff runs SQLite in WAL mode, where a read transaction sees
    the database as it was at its first read, for as long as it stays open, and never
    blocks the writer. So every table is read from one committed state however busy the
    service is, with no copy of the file on disk. The cost is that SQLite cannot
    checkpoint past a reader, so the WAL grows by what the service writes during the copy
    (it is checkpointed as usual afterwards).
    """

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self._path = path
        self._engine = _sqlite_engine(f"sqlite:///{path}", busy_timeout, writer=False)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signoff-copy")
        self._conn: Connection | None = None
        self._rows: MappingResult | None = None
        self._data_version: int | None = None

    async def _call(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    async def open(self) -> dict[str, int]:
        """Take the snapshot, check that it is a current signoff database, and count each
        table's rows."""
        try:
            return await self._call(self._open)
        except SQLAlchemyError as exc:
            raise CopyError(f"{self._path}: {_reason(exc, None)}") from exc

    def _open(self) -> dict[str, int]:
        conn = self._conn = self._engine.connect()
        conn.begin()
        # The first read fixes the snapshot everything after it sees.
        present = {
            str(name)
            for name in conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'table'")
            ).scalars()
        }
        self._data_version = int(conn.exec_driver_sql("PRAGMA data_version").scalar_one())
        if "alembic_version" not in present:
            raise CopyError(f"{self._path}: not a signoff database (it has no schema revision)")
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        if revision != head:
            raise CopyError(
                f"{self._path}: its schema is at revision {revision}, this signoff's is at "
                f"{head}: run `signoff db upgrade` on it first (with this version of signoff)"
            )
        known = {table.name for table in metadata.sorted_tables}
        unknown = sorted(
            name for name in present - known if name != "alembic_version" and not _internal(name)
        )
        if unknown:
            raise CopyError(
                f"{self._path}: holds tables signoff does not know ({', '.join(unknown)}); "
                "they would not be copied: move them elsewhere first"
            )
        return {
            table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in metadata.sorted_tables
        }

    async def start(self, table: Table) -> None:
        """Begin reading ``table``'s rows, in primary key order."""
        await self._call(lambda: self._start(table))

    def _start(self, table: Table) -> None:
        assert self._conn is not None
        columns = [
            type_coerce(column, Text).label(column.name + _JSON_SUFFIX)
            if _is_json(column)
            else column
            for column in table.columns
        ]
        query = select(*columns).order_by(*table.primary_key.columns)
        self._rows = self._conn.execute(query).mappings()

    async def fetch(self, size: int) -> list[dict[str, Any]]:
        """Up to ``size`` more rows of the table being read; none once it is done."""
        return await self._call(lambda: self._fetch(size))

    def _fetch(self, size: int) -> list[dict[str, Any]]:
        assert self._rows is not None
        return [_row_values(row) for row in self._rows.fetchmany(size)]

    async def changed_since(self) -> bool:
        """End the snapshot; whether anyone wrote to the database after it was taken."""
        return await self._call(self._changed_since)

    def _changed_since(self) -> bool:
        assert self._conn is not None
        self._conn.rollback()
        # data_version changes when another connection commits; read outside the snapshot
        # it is the database's value now.
        now = int(self._conn.exec_driver_sql("PRAGMA data_version").scalar_one())
        self._conn.rollback()
        return now != self._data_version

    async def close(self) -> None:
        await self._call(self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._engine.dispose()


def _row_values(row: RowMapping) -> dict[str, Any]:
    return {
        str(key): _json_text(value) if str(key).endswith(_JSON_SUFFIX) else value
        for key, value in row.items()
    }


def _internal(name: str) -> bool:
    return name.startswith("sqlite_")


def _reason(exc: BaseException, url: str | None) -> str:
    """What went wrong, in the database's words, without a password from ``url``."""
    error: BaseException = getattr(exc, "orig", None) or exc
    # SQLAlchemy's asyncpg adapter wraps the driver's own exception, which says it best.
    if error.__cause__ is not None:
        error = error.__cause__
    reason = str(error).strip() or type(error).__name__
    if url is not None:
        try:
            password = make_url(url).password
        except (ArgumentError, ValueError):
            password = None
        if password:
            reason = reason.replace(str(password), "***")
    return reason


def config_url(target_url: str) -> str:
    """The target as ``database.url`` takes it: a plain ``postgresql://`` URL with any
    password as ``${PGPASSWORD}`` (config reads secrets only from the environment)."""
    parsed = make_url(async_database_url(target_url))
    query = {key: value for key, value in parsed.query.items() if key.lower() != "password"}
    plain = parsed.set(drivername="postgresql", query=query).render_as_string(hide_password=True)
    return plain.replace(":***@", ":${PGPASSWORD}@", 1) if parsed.password is not None else plain
