"""The store: SQLite (the embedded default) or PostgreSQL behind one interface.

Writes go through the one writer (:mod:`approvals.store.writer`): ``await store.run(cmd)``
queues a command and returns its value once the batch it ran in has committed. Reads run on
an async engine (aiosqlite or asyncpg) in their own snapshot and never wait for the writer.

On SQLite the writer owns one connection (the standard ``sqlite3`` module) in a thread of its
own: a whole batch runs there in one hand-off, starts with ``BEGIN IMMEDIATE`` and commits
with ``synchronous=FULL``, so a commit is on disk before any caller hears of it. On
PostgreSQL a batch is one transaction on one pooled connection; rows are locked with
``FOR UPDATE`` (``SKIP LOCKED`` for the sweeper and the outbox), and a batch that makes a
request final notifies the other processes on commit (:mod:`approvals.store.notify`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, delete, event, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from approvals.audit import GENESIS_HASH, ChainBreak, verify_chain
from approvals.errors import ConcurrentUpdateError, StoreBusyError
from approvals.model import ApprovalRequest
from approvals.store.reads import Reads, SyncReads
from approvals.store.rows import AuditVerification
from approvals.store.transaction import WriteTx
from approvals.store.writer import BatchResult, Command, Writer, run_batch
from approvals.tables import (
    AGENT_KEYS,
    AUDIT,
    AUDIT_HEAD,
    DELIVERIES,
    DESTINATIONS,
    GRANTS,
    IDEMPOTENCY,
    LOGIN_TOKENS,
    OPEN_REQUESTS,
    OUTBOX,
    REQUESTS,
    VOTES,
    WEB_SESSIONS,
    metadata,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent.parent / "migrations"
_MIGRATION_LOCK_KEY = 0x5160FF  # PostgreSQL advisory lock id held while migrating
_IMMEDIATE = "signoff_immediate"
_PG_RETRYABLE = ("40001", "40P01")  # serialization failure, deadlock detected


def async_database_url(url: str) -> str:
    """Turn a plain config URL into one naming signoff's async driver.

    ``sqlite:///file.db`` becomes ``sqlite+aiosqlite:///file.db`` and ``postgresql://...``
    (or ``postgres://...``) becomes ``postgresql+asyncpg://...``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    if scheme == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    if scheme in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        return url
    raise ValueError(f"unsupported database {scheme!r}: use sqlite:/// or postgresql://")


def _configure_sqlite(engine: Engine, busy_timeout: float, *, writer: bool) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the driver so that we issue BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # The writer's commits are on disk before anyone is told (fsync per batch).
        cursor.execute(f"PRAGMA synchronous={'FULL' if writer else 'NORMAL'}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that reads and then
        # writes can fail with "database is locked" instead of waiting its turn.
        immediate = writer or conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_engine(url: str, busy_timeout: float, *, writer: bool) -> Engine:
    """A synchronous SQLite engine for the writer's or the readers' threads. Reader
    connections are closed by whoever closes the store, not by their thread."""
    engine = create_engine(url, connect_args={"timeout": busy_timeout, "check_same_thread": writer})
    _configure_sqlite(engine, busy_timeout, writer=writer)
    return engine


class _SqliteWriterThread:
    """The SQLite writer's own thread and connection; a batch is one hand-off to it.

    Both are made on first use and let go by :meth:`close` (a closed store that is used
    again starts them anew, as its engine does).
    """

    def __init__(self, url: str, busy_timeout: float) -> None:
        self._engine = _sqlite_engine(url, busy_timeout, writer=True)
        self._thread: ThreadPoolExecutor | None = None
        self._conn: Connection | None = None

    def _run(self, commands: Sequence[Command[Any]]) -> BatchResult:
        if self._conn is None:
            self._conn = self._engine.connect()
        return run_batch(self._conn, commands)

    async def run(self, commands: Sequence[Command[Any]]) -> BatchResult:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signoff-writer")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._run, commands)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._engine.dispose()

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(thread, self._close)
        thread.shutdown(wait=True)


class _SqliteReaderThreads:
    """Threads that run whole reads on SQLite connections of their own: one hand-off per
    read, however many statements it runs (WAL lets them read while the writer writes).
    Each thread keeps its connection open between reads."""

    THREADS = 2

    def __init__(self, url: str, busy_timeout: float) -> None:
        self._engine = _sqlite_engine(url, busy_timeout, writer=False)
        self._threads: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._connections: list[Connection] = []

    def _read(self, query: Callable[[SyncReads], T]) -> T:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._engine.connect()
            self._connections.append(conn)
        with conn.begin():
            return query(SyncReads(conn))

    async def run(self, query: Callable[[SyncReads], T]) -> T:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.THREADS, thread_name_prefix="signoff-reader")
            self._local = threading.local()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._read, query)

    async def close(self) -> None:
        threads, self._threads = self._threads, None
        if threads is not None:
            await asyncio.get_running_loop().run_in_executor(None, threads.shutdown, True)
        for conn in self._connections:
            conn.close()  # the threads are gone; check_same_thread is off for this
        self._connections.clear()
        self._engine.dispose()


class SqlStore:
    """The store on an async SQLAlchemy engine (aiosqlite or asyncpg) plus its one writer."""

    def __init__(self, url: str, *, busy_timeout: float = 15.0, echo: bool = False) -> None:
        self.url = url
        async_url = async_database_url(url)
        self.is_sqlite = async_url.startswith("sqlite")
        options: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            options["connect_args"] = {"timeout": busy_timeout}
        else:
            options.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(async_url, **options)
        self._sqlite_thread: _SqliteWriterThread | None = None
        self._sqlite_readers: _SqliteReaderThreads | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine.sync_engine, busy_timeout, writer=False)
            sync_url = "sqlite://" + async_url.partition("://")[2]
            self._sqlite_thread = _SqliteWriterThread(sync_url, busy_timeout)
            self._sqlite_readers = _SqliteReaderThreads(sync_url, busy_timeout)
            self._writer = Writer(self._sqlite_thread.run)
        else:
            self._writer = Writer(self._run_postgres_batch)

    async def _run_postgres_batch(self, commands: Sequence[Command[Any]]) -> BatchResult:
        async with self.engine.connect() as conn:
            return await conn.run_sync(run_batch, commands)

    @property
    def writer(self) -> Writer:
        return self._writer

    async def run(self, command: Command[T]) -> T:
        """Run ``command`` in the writer's next batch; its value once the batch committed.

        Raises what the command raised, :class:`StoreBusyError` when the database stayed
        locked (SQLite) or no connection was free, and :class:`ConcurrentUpdateError` when
        PostgreSQL broke a deadlock or a serialization conflict by failing this command.
        """
        try:
            return await self._writer.submit(command)
        except OperationalError as exc:
            if _is_sqlite_busy(exc):
                raise StoreBusyError("the database is busy; try again in a moment") from exc
            raise
        except PoolTimeoutError as exc:
            raise StoreBusyError("all database connections are busy; try again") from exc
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) in _PG_RETRYABLE:
                raise ConcurrentUpdateError(str(exc.orig)) from exc
            raise

    async def query(self, query: Callable[[SyncReads], T]) -> T:
        """Run ``query``, a plain function of :class:`SyncReads`, in one read transaction
        (one snapshot) and return its value. The fast way to read: on SQLite it is one
        hand-off to a reader thread; it never waits for the writer."""
        if self._sqlite_readers is not None:
            return await self._sqlite_readers.run(query)
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                return await conn.run_sync(lambda sync_conn: query(SyncReads(sync_conn)))

    async def close(self) -> None:
        if self._sqlite_thread is not None:
            await self._sqlite_thread.close()
        if self._sqlite_readers is not None:
            await self._sqlite_readers.close()
        await self.engine.dispose()

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (safe to run on every start)."""
        async with self.engine.connect() as conn:
            await conn.execution_options(**{_IMMEDIATE: True})
            async with conn.begin():
                await migrate_in(conn)

    async def drop_everything(self) -> None:
        """Remove all signoff tables (tests and ``db reset`` only)."""
        async with self.engine.connect() as conn:
            await conn.execution_options(**{_IMMEDIATE: True})
            async with conn.begin():
                await conn.run_sync(metadata.drop_all)
                await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Reads]:
        """A read-only transaction (a consistent snapshot on PostgreSQL and SQLite WAL)."""
        async with self.engine.connect() as conn:
            if not self.is_sqlite:
                # One snapshot for the whole read (READ COMMITTED would see later commits).
                await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                yield Reads(conn)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def get_request(self, request_id: str) -> ApprovalRequest | None:
        return await self.query(lambda reads: reads.get_request(request_id))

    async def next_due_at(self) -> datetime | None:
        return await self.query(lambda reads: reads.next_due_at())

    async def verify_audit(self, *, batch: int = 5000) -> AuditVerification:
        """Walk the whole chain and compare its end with the stored head."""
        async with self.read() as reads:
            return await verify_audit_in(reads, batch=batch)

    async def delete_all_data(self) -> None:
        """Empty every table and reset the audit chain (tests only)."""
        await self.run(_delete_everything)


async def migrate_in(conn: AsyncConnection) -> None:
    """Bring the schema to the newest Alembic revision inside ``conn``'s open transaction.

    On PostgreSQL it first takes the migration lock: several processes may start at once;
    one migrates, the others wait (and then find nothing to do).
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    await conn.run_sync(_upgrade_to_head)


def _upgrade_to_head(sync_conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = sync_conn
    command.upgrade(config, "head")


async def verify_audit_in(reads: Reads, *, batch: int = 5000) -> AuditVerification:
    """Walk the whole audit chain in ``reads``' transaction, ``batch`` entries at a time,
    and compare its end with the stored head."""
    checked = 0
    last_seq, last_hash = 0, GENESIS_HASH
    head_seq, head_hash = await reads.audit_head()
    while True:
        entries = await reads.audit_entries(after_seq=last_seq, limit=batch)
        beyond = [entry for entry in entries if entry.seq > head_seq]
        entries = [entry for entry in entries if entry.seq <= head_seq]
        if entries:
            count, broken = verify_chain(entries, start_seq=last_seq + 1, prev_hash=last_hash)
            checked += count
            if broken is not None:
                return AuditVerification(checked, broken)
            last_seq, last_hash = entries[-1].seq, entries[-1].hash
        if beyond:
            return AuditVerification(
                checked, ChainBreak(head_seq + 1, "entries exist beyond the recorded head")
            )
        if not entries:
            break
    if (last_seq, last_hash) != (head_seq, head_hash):
        where = last_seq + 1 if last_seq < head_seq else last_seq
        return AuditVerification(
            checked, ChainBreak(where, "the chain does not end at the recorded head")
        )
    return AuditVerification(checked, None)


def _delete_everything(tx: WriteTx) -> None:
    for table in (
        VOTES,
        REQUESTS,
        AUDIT,
        OUTBOX,
        DELIVERIES,
        DESTINATIONS,
        IDEMPOTENCY,
        AGENT_KEYS,
        LOGIN_TOKENS,
        WEB_SESSIONS,
        OPEN_REQUESTS,
        GRANTS,
    ):
        tx.conn.execute(delete(table))
    tx.conn.execute(update(AUDIT_HEAD).where(AUDIT_HEAD.c.id == 1).values(seq=0, hash=GENESIS_HASH))


def _is_sqlite_busy(exc: DBAPIError) -> bool:
    return "database is locked" in str(exc.orig) or "database is busy" in str(exc.orig)
