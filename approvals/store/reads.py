"""Read-only queries. They never wait for the writer.

:class:`SyncReads` holds every query, as plain synchronous code on one connection: the
writer's transaction (:class:`~approvals.store.transaction.WriteTx`) reads through it, and
so does :meth:`approvals.store.SqlStore.query`, the fast read path (on SQLite one hand-off
to a reader thread per read, however many statements it runs). :class:`Reads` is the same
queries on the async engine, for code that reads inside ``async with store.read()``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Row
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.audit import AuditEntry
from approvals.machine import Status
from approvals.model import ApprovalRequest
from approvals.store import queries
from approvals.store.rows import DeliveryRecord, audit_from_row, delivery_from_row

T = TypeVar("T")


class SyncReads:
    """Queries on one synchronous connection, inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @property
    def is_postgres(self) -> bool:
        return self.conn.dialect.name == "postgresql"

    def get_request(self, request_id: str, *, lock: bool = False) -> ApprovalRequest | None:
        """One request with its votes (one query); ``lock`` holds its row until commit
        (PostgreSQL, in a write)."""
        rows = self.conn.execute(*queries.request_with_votes(request_id, lock=lock)).all()
        return queries.request_from_joined_rows(rows)

    def list_requests(
        self,
        *,
        agent: str | None = None,
        status: Status | None = None,
        limit: int = 100,
        before: datetime | None = None,
    ) -> list[ApprovalRequest]:
        """Newest first, optionally for one agent and one status."""
        query = queries.listed_requests(agent=agent, status=status, limit=limit, before=before)
        rows = self.conn.execute(*query).all()
        if not rows:
            return []
        votes = self.conn.execute(*queries.votes_of([row.id for row in rows]))
        return queries.requests_with_vote_rows(rows, votes)

    def count_open(self, agent: str) -> int:
        return int(self.conn.execute(*queries.open_count(agent)).scalar_one())

    def pending_twin(self, request: ApprovalRequest) -> ApprovalRequest | None:
        """The agent's oldest pending request asking exactly what ``request`` asks (see
        :func:`approvals.store.queries.pending_twin`), or ``None``."""
        found = self.conn.execute(*queries.pending_twin(request)).scalar_one_or_none()
        return None if found is None else self.get_request(str(found))

    def last_denial_by_people(
        self, agent: str, payload_sha256: str, since: datetime
    ) -> ApprovalRequest | None:
        """The agent's latest request with this payload that people denied since ``since``
        (see :func:`approvals.store.queries.last_denial_by_people`), or ``None``."""
        query = queries.last_denial_by_people(agent, payload_sha256, since)
        found = self.conn.execute(*query).scalar_one_or_none()
        return None if found is None else self.get_request(str(found))

    def next_outbox_ready_at(self, now: datetime) -> datetime | None:
        """The earliest moment after ``now`` when a pending outbox row becomes sendable."""
        value = self.conn.execute(*queries.next_outbox_ready_time(now)).scalar_one()
        return queries.aggregate_time(value, self.conn.dialect)

    def next_due_at(self) -> datetime | None:
        """The earliest moment any pending request needs the sweeper."""
        value = self.conn.execute(*queries.next_due_time()).scalar_one()
        return queries.aggregate_time(value, self.conn.dialect)

    def deliveries(self, request_id: str) -> list[DeliveryRecord]:
        return [
            delivery_from_row(row) for row in self.conn.execute(*queries.deliveries_of(request_id))
        ]

    def deliveries_of_many(self, request_ids: list[str]) -> dict[str, list[DeliveryRecord]]:
        """The cards of several requests, in one query: request id -> its deliveries."""
        found: dict[str, list[DeliveryRecord]] = {request_id: [] for request_id in request_ids}
        if not request_ids:
            return found
        for row in self.conn.execute(*queries.deliveries_of_many(request_ids)):
            found[row.request_id].append(delivery_from_row(row))
        return found

    def idempotency_key(self, agent: str, key: str) -> tuple[str, str] | None:
        """(request id, command fingerprint) recorded for an agent's key, if any."""
        row = self.conn.execute(*queries.idempotency_record(agent, key)).first()
        return None if row is None else (str(row.request_id), str(row.body_sha256))

    def audit_entries(
        self, *, after_seq: int = 0, limit: int | None = None, request_id: str | None = None
    ) -> list[AuditEntry]:
        query = queries.audit_entries(after_seq=after_seq, limit=limit, request_id=request_id)
        return [audit_from_row(row) for row in self.conn.execute(*query)]

    def audit_head(self) -> tuple[int, str]:
        row = self.conn.execute(*queries.audit_head()).one()
        return int(row.seq), str(row.hash)

    def outbox_counts(self) -> dict[str, int]:
        rows = self.conn.execute(*queries.outbox_counts())
        return {str(state): int(count) for state, count in rows}

    def agent_key(self, key_id: str) -> Row[Any] | None:
        """An agent API key's row (agent, secret hash, revocation), by its public id."""
        return self.conn.execute(*queries.agent_key(key_id)).first()

    def web_session(self, session_sha256: str) -> Row[Any] | None:
        """A web inbox session's row, by the hash of its cookie."""
        return self.conn.execute(*queries.web_session(session_sha256)).first()


class Reads:
    """The queries of :class:`SyncReads` inside one async read transaction; ``conn`` is
    there for the statements the typed methods do not cover."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @property
    def is_postgres(self) -> bool:
        return self.conn.dialect.name == "postgresql"

    async def _run(self, query: Callable[[SyncReads], T]) -> T:
        return await self.conn.run_sync(lambda sync_conn: query(SyncReads(sync_conn)))

    async def get_request(self, request_id: str) -> ApprovalRequest | None:
        return await self._run(lambda reads: reads.get_request(request_id))

    async def list_requests(
        self,
        *,
        agent: str | None = None,
        status: Status | None = None,
        limit: int = 100,
        before: datetime | None = None,
    ) -> list[ApprovalRequest]:
        return await self._run(
            lambda reads: reads.list_requests(
                agent=agent, status=status, limit=limit, before=before
            )
        )

    async def count_open(self, agent: str) -> int:
        return await self._run(lambda reads: reads.count_open(agent))

    async def next_outbox_ready_at(self, now: datetime) -> datetime | None:
        return await self._run(lambda reads: reads.next_outbox_ready_at(now))

    async def next_due_at(self) -> datetime | None:
        return await self._run(lambda reads: reads.next_due_at())

    async def deliveries(self, request_id: str) -> list[DeliveryRecord]:
        return await self._run(lambda reads: reads.deliveries(request_id))

    async def idempotency_key(self, agent: str, key: str) -> tuple[str, str] | None:
        return await self._run(lambda reads: reads.idempotency_key(agent, key))

    async def audit_entries(
        self, *, after_seq: int = 0, limit: int | None = None, request_id: str | None = None
    ) -> list[AuditEntry]:
        return await self._run(
            lambda reads: reads.audit_entries(
                after_seq=after_seq, limit=limit, request_id=request_id
            )
        )

    async def audit_head(self) -> tuple[int, str]:
        return await self._run(lambda reads: reads.audit_head())

    async def outbox_counts(self) -> dict[str, int]:
        return await self._run(lambda reads: reads.outbox_counts())
