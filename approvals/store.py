"""The durable store: requests, votes, audit chain, outbox and deliveries on SQL.

SQLite (the embedded default) and PostgreSQL run through the same code. Every state change
happens inside :meth:`SqlStore.write`, one transaction that holds the conditional update,
its audit entry and the outbox rows it causes. On SQLite a writer starts with
``BEGIN IMMEDIATE`` so that two writers never both read and then collide on upgrade; on
PostgreSQL rows are locked with ``FOR UPDATE`` (``SKIP LOCKED`` for the sweeper), and a
transaction that makes a request final notifies the other processes on commit
(:mod:`approvals.notify`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Row, case, delete, event, func, insert, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from approvals.audit import GENESIS_HASH, AuditEntry, ChainBreak, entry_hash, verify_chain
from approvals.canonical import canonical_json
from approvals.machine import Status
from approvals.model import ApprovalRequest, CastVote, Decision, Verdict
from approvals.notify import REQUEST_FINAL_CHANNEL
from approvals.policy import Policy
from approvals.tables import (
    AGENT_KEYS,
    AUDIT,
    AUDIT_HEAD,
    DELIVERIES,
    DESTINATIONS,
    IDEMPOTENCY,
    LOGIN_TOKENS,
    OUTBOX,
    REQUESTS,
    VOTES,
    WEB_SESSIONS,
    UTCDateTime,
    metadata,
)

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_WRITE_OPTION = "signoff_write"
_MIGRATION_LOCK_KEY = 0x5160FF  # PostgreSQL advisory lock id held while migrating


class StoreBusyError(Exception):
    """The database stayed locked past the busy timeout; the caller should ask to retry."""


class ConcurrentUpdateError(Exception):
    """A conditional write found the row changed by someone else; retry the command."""


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


@dataclass(frozen=True)
class OutboxItem:
    """A claimed outbox row, handed to the dispatcher."""

    id: int
    destination: str
    kind: str
    request_id: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


@dataclass(frozen=True)
class DeliveryRecord:
    """A request's card at one destination; ``ref`` is ``None`` until it was sent."""

    request_id: str
    destination: str
    level: int
    ref: dict[str, Any] | None


@dataclass(frozen=True)
class AuditVerification:
    """The result of checking the whole audit chain."""

    checked: int
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def _request_values(request: ApprovalRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "agent": request.agent,
        "action": request.action,
        "title": request.title,
        "details": request.details,
        "params": request.params,
        "payload_sha256": request.payload_sha256,
        "requested_by": request.requested_by,
        "policy_name": request.policy.name,
        "policy_snapshot": request.policy.to_json(),
        "status": request.status.value,
        "level": request.level,
        "created_at": request.created_at,
        "deadline": request.deadline,
        "next_due_at": request.next_due_at,
        "next_remind_at": request.next_remind_at,
        "decided_at": request.decided_at,
        "decision": request.decision.to_json() if request.decision else None,
        "callback_url": request.callback_url,
        "version": request.version,
    }


def _vote_from_row(row: Row[Any]) -> CastVote:
    return CastVote(
        person=row.person,
        verdict=Verdict(row.verdict),
        platform=row.platform,
        identity=row.identity,
        reason=row.reason,
        cast_at=row.cast_at,
    )


def _request_from_row(row: Row[Any], votes: Sequence[CastVote]) -> ApprovalRequest:
    return ApprovalRequest(
        id=row.id,
        agent=row.agent,
        action=row.action,
        title=row.title,
        details=row.details,
        params=row.params,
        payload_sha256=row.payload_sha256,
        requested_by=row.requested_by,
        policy=Policy.from_json(row.policy_snapshot),
        status=Status(row.status),
        level=row.level,
        created_at=row.created_at,
        deadline=row.deadline,
        next_due_at=row.next_due_at,
        next_remind_at=row.next_remind_at,
        decided_at=row.decided_at,
        decision=Decision.from_json(row.decision) if row.decision else None,
        votes=tuple(votes),
        callback_url=row.callback_url,
        version=row.version,
    )


def _audit_from_row(row: Row[Any]) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        at=row.at,
        kind=row.kind,
        request_id=row.request_id,
        actor=row.actor,
        data=row.data,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


class _Reads:
    """Queries shared by read-only and write transactions."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @property
    def is_postgres(self) -> bool:
        return self.conn.dialect.name == "postgresql"

    async def _votes_for(self, request_ids: Sequence[str]) -> dict[str, list[CastVote]]:
        found: dict[str, list[CastVote]] = {rid: [] for rid in request_ids}
        if not request_ids:
            return found
        rows = await self.conn.execute(
            select(VOTES).where(VOTES.c.request_id.in_(request_ids)).order_by(VOTES.c.id)
        )
        for row in rows:
            found[row.request_id].append(_vote_from_row(row))
        return found

    async def _with_votes(self, rows: Sequence[Row[Any]]) -> list[ApprovalRequest]:
        votes = await self._votes_for([row.id for row in rows])
        return [_request_from_row(row, votes[row.id]) for row in rows]

    async def get_request(self, request_id: str, *, lock: bool = False) -> ApprovalRequest | None:
        """Load one request with its votes; ``lock`` holds its row until commit (PostgreSQL)."""
        query = select(REQUESTS).where(REQUESTS.c.id == request_id)
        if lock:
            query = query.with_for_update()
        row = (await self.conn.execute(query)).first()
        if row is None:
            return None
        return (await self._with_votes([row]))[0]

    async def list_requests(
        self,
        *,
        agent: str | None = None,
        status: Status | None = None,
        limit: int = 100,
        before: datetime | None = None,
    ) -> list[ApprovalRequest]:
        """Newest first, optionally for one agent and one status."""
        query = select(REQUESTS)
        if agent is not None:
            query = query.where(REQUESTS.c.agent == agent)
        if status is not None:
            query = query.where(REQUESTS.c.status == status.value)
        if before is not None:
            query = query.where(REQUESTS.c.created_at < before)
        query = query.order_by(REQUESTS.c.created_at.desc(), REQUESTS.c.id).limit(limit)
        rows = (await self.conn.execute(query)).all()
        return await self._with_votes(rows)

    async def count_open(self, agent: str) -> int:
        query = select(func.count()).where(
            REQUESTS.c.agent == agent, REQUESTS.c.status == Status.PENDING.value
        )
        return int((await self.conn.execute(query)).scalar_one())

    async def next_outbox_ready_at(self, now: datetime) -> datetime | None:
        """The earliest moment after ``now`` when a pending outbox row becomes sendable: its
        retry time, or its destination's "not before", whichever is later."""
        ready_at = case(
            (DESTINATIONS.c.not_before > OUTBOX.c.next_attempt_at, DESTINATIONS.c.not_before),
            else_=OUTBOX.c.next_attempt_at,
        )
        query = (
            select(func.min(ready_at))
            .select_from(OUTBOX.outerjoin(DESTINATIONS, DESTINATIONS.c.key == OUTBOX.c.destination))
            .where(OUTBOX.c.state == "pending", ready_at > now)
        )
        value = (await self.conn.execute(query)).scalar_one_or_none()
        if value is None:
            return None
        return UTCDateTime().process_result_value(_parse_aggregate_time(value), self.conn.dialect)

    async def next_due_at(self) -> datetime | None:
        """The earliest moment any pending request needs the sweeper."""
        query = select(func.min(REQUESTS.c.next_due_at)).where(
            REQUESTS.c.status == Status.PENDING.value
        )
        value = (await self.conn.execute(query)).scalar_one_or_none()
        if value is None:
            return None
        # Aggregates bypass the column type, so SQLite hands back text or a naive value.
        return UTCDateTime().process_result_value(_parse_aggregate_time(value), self.conn.dialect)

    async def deliveries(self, request_id: str) -> list[DeliveryRecord]:
        rows = await self.conn.execute(
            select(DELIVERIES)
            .where(DELIVERIES.c.request_id == request_id)
            .order_by(DELIVERIES.c.destination)
        )
        return [DeliveryRecord(r.request_id, r.destination, r.level, r.ref) for r in rows]

    async def idempotency_key(self, agent: str, key: str) -> tuple[str, str] | None:
        """(request id, command fingerprint) recorded for an agent's key, if any."""
        row = (
            await self.conn.execute(
                select(IDEMPOTENCY).where(IDEMPOTENCY.c.agent == agent, IDEMPOTENCY.c.key == key)
            )
        ).first()
        return None if row is None else (str(row.request_id), str(row.body_sha256))

    async def audit_entries(
        self, *, after_seq: int = 0, limit: int | None = None, request_id: str | None = None
    ) -> list[AuditEntry]:
        query = select(AUDIT).where(AUDIT.c.seq > after_seq).order_by(AUDIT.c.seq)
        if request_id is not None:
            query = query.where(AUDIT.c.request_id == request_id)
        if limit is not None:
            query = query.limit(limit)
        return [_audit_from_row(row) for row in await self.conn.execute(query)]

    async def audit_head(self) -> tuple[int, str]:
        row = (await self.conn.execute(select(AUDIT_HEAD).where(AUDIT_HEAD.c.id == 1))).one()
        return int(row.seq), str(row.hash)

    async def outbox_counts(self) -> dict[str, int]:
        rows = await self.conn.execute(
            select(OUTBOX.c.state, func.count()).group_by(OUTBOX.c.state)
        )
        return {str(state): int(count) for state, count in rows}


def _parse_aggregate_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


class StoreTransaction(_Reads):
    """One write transaction. Every method runs inside it; commit happens on exit."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn)
        self._notified: dict[tuple[str, str], None] = {}

    async def insert_request(self, request: ApprovalRequest) -> None:
        await self.conn.execute(insert(REQUESTS).values(**_request_values(request)))

    async def update_request(self, request: ApprovalRequest, *, expected_version: int) -> None:
        """The conditional write: succeeds only if nobody changed the row since we read it."""
        values = _request_values(request)
        del values["id"]
        result = await self.conn.execute(
            update(REQUESTS)
            .where(REQUESTS.c.id == request.id, REQUESTS.c.version == expected_version)
            .values(**values)
        )
        if result.rowcount != 1:
            raise ConcurrentUpdateError(f"request {request.id} changed concurrently")
        if request.status.is_final:
            self.notify(REQUEST_FINAL_CHANNEL, request.id)

    def notify(self, channel: str, payload: str = "") -> None:
        """Tell every listening process, once this transaction commits (PostgreSQL only).

        Notifications are gathered and sent together just before the commit: one round trip
        per transaction, not one per change (a sweep decides hundreds at once). Identical
        ones are sent once. A notification is a hint to re-read, never the change itself.
        """
        if self.is_postgres:
            self._notified.setdefault((channel, payload))

    async def _send_notifications(self) -> None:
        if not self._notified:
            return
        channels, payloads = zip(*self._notified, strict=True)
        self._notified.clear()
        await self.conn.execute(
            text(
                "SELECT pg_notify(channel, payload) FROM unnest("
                "CAST(:channels AS text[]), CAST(:payloads AS text[])) AS n(channel, payload)"
            ),
            {"channels": list(channels), "payloads": list(payloads)},
        )

    async def postpone(self, request_id: str, until: datetime) -> None:
        """Look at a pending request again at ``until`` (after a failed deadline step)."""
        await self.conn.execute(
            update(REQUESTS).where(REQUESTS.c.id == request_id).values(next_due_at=until)
        )

    async def insert_vote(self, request_id: str, vote: CastVote) -> None:
        await self.conn.execute(
            insert(VOTES).values(
                request_id=request_id,
                person=vote.person,
                verdict=vote.verdict.value,
                platform=vote.platform,
                identity=vote.identity,
                reason=vote.reason,
                cast_at=vote.cast_at,
            )
        )

    async def due_requests(self, now: datetime, limit: int) -> list[ApprovalRequest]:
        """Claim pending requests whose next due time has come, oldest due first.

        On PostgreSQL, rows another process is already sweeping are skipped, not waited for.
        """
        query = (
            select(REQUESTS)
            .where(REQUESTS.c.status == Status.PENDING.value, REQUESTS.c.next_due_at <= now)
            .order_by(REQUESTS.c.next_due_at, REQUESTS.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = (await self.conn.execute(query)).all()
        return await self._with_votes(rows)

    async def append_audit(
        self,
        kind: str,
        *,
        at: datetime,
        actor: str,
        request_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry to the chain. The head row lock orders appends across processes."""
        head = (
            await self.conn.execute(
                select(AUDIT_HEAD).where(AUDIT_HEAD.c.id == 1).with_for_update()
            )
        ).one()
        seq = int(head.seq) + 1
        at = at.astimezone(UTC)  # hashed as stored: the column holds UTC
        data_text = canonical_json(data or {}).decode("utf-8")
        digest = entry_hash(
            seq=seq,
            at=at,
            kind=kind,
            request_id=request_id,
            actor=actor,
            data=data_text,
            prev_hash=head.hash,
        )
        entry = AuditEntry(seq, at, kind, request_id, actor, data_text, head.hash, digest)
        await self.conn.execute(insert(AUDIT).values(**entry.__dict__))
        await self.conn.execute(
            update(AUDIT_HEAD).where(AUDIT_HEAD.c.id == 1).values(seq=seq, hash=digest)
        )
        return entry

    async def lock_agent(self, agent: str) -> None:
        """Serialize this agent's creates until commit (PostgreSQL; SQLite has one writer)."""
        if self.is_postgres:
            await self.conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:agent))"), {"agent": agent}
            )

    async def claim_idempotency_key(
        self, agent: str, key: str, fingerprint: str, request_id: str, at: datetime
    ) -> None:
        """Reserve an ``Idempotency-Key``; raises ``IntegrityError`` when it is taken."""
        await self.conn.execute(
            insert(IDEMPOTENCY).values(
                agent=agent, key=key, body_sha256=fingerprint, request_id=request_id, created_at=at
            )
        )

    async def enqueue(
        self,
        *,
        request_id: str,
        destination: str,
        kind: str,
        at: datetime,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Add an outbox row; it is delivered after every earlier row for the destination."""
        await self.conn.execute(
            insert(OUTBOX).values(
                destination=destination,
                kind=kind,
                request_id=request_id,
                payload=payload or {},
                state="pending",
                attempts=0,
                created_at=at,
                next_attempt_at=at,
            )
        )

    async def add_delivery(
        self, request_id: str, destination: str, level: int, at: datetime
    ) -> bool:
        """Record that a card goes to ``destination``. False if the request already has one."""
        exists = (
            await self.conn.execute(
                select(DELIVERIES.c.request_id).where(
                    DELIVERIES.c.request_id == request_id, DELIVERIES.c.destination == destination
                )
            )
        ).first()
        if exists is not None:
            return False
        await self.conn.execute(
            insert(DELIVERIES).values(
                request_id=request_id, destination=destination, level=level, ref=None, updated_at=at
            )
        )
        return True

    async def set_delivery_ref(
        self, request_id: str, destination: str, ref: dict[str, Any], at: datetime
    ) -> None:
        await self.conn.execute(
            update(DELIVERIES)
            .where(DELIVERIES.c.request_id == request_id, DELIVERIES.c.destination == destination)
            .values(ref=ref, updated_at=at)
        )

    async def claim_outbox(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[OutboxItem]:
        """Lease the head row of each ready destination.

        A row is ready when it is the oldest unfinished row of its destination (so each
        destination sees its messages in order), its retry time has come, nobody holds a
        live lease on it, and the destination is not paused (rate limit or Retry-After).
        """
        earlier = OUTBOX.alias("earlier")
        head_of_line = ~(
            select(earlier.c.id)
            .where(
                earlier.c.destination == OUTBOX.c.destination,
                earlier.c.state == "pending",
                earlier.c.id < OUTBOX.c.id,
            )
            .exists()
        )
        paused = (
            select(DESTINATIONS.c.key)
            .where(DESTINATIONS.c.key == OUTBOX.c.destination, DESTINATIONS.c.not_before > now)
            .exists()
        )
        query = (
            select(OUTBOX)
            .where(
                OUTBOX.c.state == "pending",
                OUTBOX.c.next_attempt_at <= now,
                or_(OUTBOX.c.lease_until.is_(None), OUTBOX.c.lease_until < now),
                head_of_line,
                ~paused,
            )
            .order_by(OUTBOX.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=OUTBOX)
        )
        rows = (await self.conn.execute(query)).all()
        if not rows:
            return []
        await self.conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id.in_([row.id for row in rows]))
            .values(lease_until=lease_until)
        )
        return [
            OutboxItem(
                id=row.id,
                destination=row.destination,
                kind=row.kind,
                request_id=row.request_id,
                payload=row.payload,
                attempts=row.attempts,
                created_at=row.created_at,
            )
            for row in rows
        ]

    async def finish_outbox(
        self, item_id: int, *, state: str, at: datetime, error: str | None = None
    ) -> None:
        """Mark a row sent or dead (dead-lettered). Both are final."""
        await self.conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id == item_id)
            .values(state=state, finished_at=at, lease_until=None, last_error=error)
        )

    async def retry_outbox(self, item_id: int, *, attempts: int, at: datetime, error: str) -> None:
        await self.conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id == item_id)
            .values(attempts=attempts, next_attempt_at=at, lease_until=None, last_error=error)
        )

    async def pause_destination(self, key: str, until: datetime) -> None:
        """Send nothing to ``key`` before ``until`` (never moves an existing pause earlier)."""
        current = (
            await self.conn.execute(
                select(DESTINATIONS.c.not_before).where(DESTINATIONS.c.key == key)
            )
        ).scalar_one_or_none()
        if current is None:
            await self.conn.execute(insert(DESTINATIONS).values(key=key, not_before=until))
        elif current < until:
            await self.conn.execute(
                update(DESTINATIONS).where(DESTINATIONS.c.key == key).values(not_before=until)
            )


class SqlStore:
    """The store on an async SQLAlchemy engine (aiosqlite or asyncpg)."""

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
        self._sqlite_writer: asyncio.Lock | None = None
        if self.is_sqlite:
            self._configure_sqlite(busy_timeout)
            self._sqlite_writer = asyncio.Lock()

    def _configure_sqlite(self, busy_timeout: float) -> None:
        sync_engine = self.engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
            # Take transaction control away from the driver so that we issue BEGIN ourselves.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cursor.close()

        @event.listens_for(sync_engine, "begin")
        def on_begin(conn: Connection) -> None:
            # Writers take the write lock up front: a deferred transaction that reads and
            # then writes can fail with "database is locked" instead of waiting its turn.
            immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    async def close(self) -> None:
        await self.engine.dispose()

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (safe to run on every start)."""
        from alembic import command
        from alembic.config import Config

        def upgrade(sync_conn: Connection) -> None:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_DIR))
            config.attributes["connection"] = sync_conn
            command.upgrade(config, "head")

        async with self.engine.connect() as conn:
            await conn.execution_options(**{_WRITE_OPTION: True})
            async with conn.begin():
                if not self.is_sqlite:
                    # Several processes may start at once; one migrates, the others wait.
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                    )
                await conn.run_sync(upgrade)

    async def drop_everything(self) -> None:
        """Remove all signoff tables (tests and ``db reset`` only)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))

    @asynccontextmanager
    async def write(self) -> AsyncIterator[StoreTransaction]:
        """A write transaction; commits on normal exit, rolls back on an exception."""
        try:
            async with self._writer_turn(), self.engine.connect() as conn:
                await conn.execution_options(**{_WRITE_OPTION: True})
                async with conn.begin():
                    tx = StoreTransaction(conn)
                    yield tx
                    await tx._send_notifications()
        except OperationalError as exc:
            if _is_sqlite_busy(exc):
                raise StoreBusyError("the database is busy; try again in a moment") from exc
            raise
        except PoolTimeoutError as exc:
            raise StoreBusyError("all database connections are busy; try again") from exc

    @asynccontextmanager
    async def _writer_turn(self) -> AsyncIterator[None]:
        # SQLite has one writer at a time. Queueing this process's writers here is fair and
        # cheap; left to SQLite's busy handler they would sleep and retry, and the unlucky
        # ones wait far longer than their turn. Other processes still meet the busy timeout.
        if self._sqlite_writer is None:
            yield
            return
        async with self._sqlite_writer:
            yield

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_Reads]:
        """A read-only transaction (a consistent snapshot on PostgreSQL and SQLite WAL)."""
        async with self.engine.connect() as conn:
            if not self.is_sqlite:
                # One snapshot for the whole read (READ COMMITTED would see later commits).
                await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                yield _Reads(conn)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def get_request(self, request_id: str) -> ApprovalRequest | None:
        async with self.read() as tx:
            return await tx.get_request(request_id)

    async def next_due_at(self) -> datetime | None:
        async with self.read() as tx:
            return await tx.next_due_at()

    async def verify_audit(self, *, batch: int = 5000) -> AuditVerification:
        """Walk the whole chain and compare its end with the stored head."""
        checked = 0
        last_seq, last_hash = 0, GENESIS_HASH
        async with self.read() as tx:
            head_seq, head_hash = await tx.audit_head()
            while True:
                entries = await tx.audit_entries(after_seq=last_seq, limit=batch)
                beyond = [entry for entry in entries if entry.seq > head_seq]
                entries = [entry for entry in entries if entry.seq <= head_seq]
                if entries:
                    count, broken = verify_chain(
                        entries, start_seq=last_seq + 1, prev_hash=last_hash
                    )
                    checked += count
                    if broken is not None:
                        return AuditVerification(checked, broken)
                    last_seq, last_hash = entries[-1].seq, entries[-1].hash
                if beyond:
                    return AuditVerification(
                        checked,
                        ChainBreak(head_seq + 1, "entries exist beyond the recorded head"),
                    )
                if not entries:
                    break
        if (last_seq, last_hash) != (head_seq, head_hash):
            where = last_seq + 1 if last_seq < head_seq else last_seq
            return AuditVerification(
                checked, ChainBreak(where, "the chain does not end at the recorded head")
            )
        return AuditVerification(checked, None)

    async def delete_all_data(self) -> None:
        """Empty every table and reset the audit chain (tests only)."""
        async with self.write() as tx:
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
            ):
                await tx.conn.execute(delete(table))
            await tx.conn.execute(
                update(AUDIT_HEAD).where(AUDIT_HEAD.c.id == 1).values(seq=0, hash=GENESIS_HASH)
            )


def _is_sqlite_busy(exc: DBAPIError) -> bool:
    return "database is locked" in str(exc.orig) or "database is busy" in str(exc.orig)
