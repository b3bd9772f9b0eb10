"""Read-only queries, run on the async engine; they never wait for the writer.

A read is one snapshot (SQLite WAL, or PostgreSQL ``REPEATABLE READ``); see
:meth:`approvals.store.SqlStore.read`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.audit import AuditEntry
from approvals.machine import Status
from approvals.model import ApprovalRequest
from approvals.store import queries
from approvals.store.rows import DeliveryRecord, audit_from_row, delivery_from_row


class Reads:
    """Queries inside one read-only transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @property
    def is_postgres(self) -> bool:
        return self.conn.dialect.name == "postgresql"

    async def get_request(self, request_id: str) -> ApprovalRequest | None:
        """One request with its votes (one query)."""
        rows = (await self.conn.execute(*queries.request_with_votes(request_id))).all()
        return queries.request_from_joined_rows(rows)

    async def list_requests(
        self,
        *,
        agent: str | None = None,
        status: Status | None = None,
        limit: int = 100,
        before: datetime | None = None,
    ) -> list[ApprovalRequest]:
        """Newest first, optionally for one agent and one status."""
        query = queries.listed_requests(agent=agent, status=status, limit=limit, before=before)
        rows = (await self.conn.execute(*query)).all()
        if not rows:
            return []
        votes = await self.conn.execute(*queries.votes_of([row.id for row in rows]))
        return queries.requests_with_vote_rows(rows, votes)

    async def count_open(self, agent: str) -> int:
        return int((await self.conn.execute(*queries.open_count(agent))).scalar_one())

    async def next_outbox_ready_at(self, now: datetime) -> datetime | None:
        """The earliest moment after ``now`` when a pending outbox row becomes sendable."""
        value = (await self.conn.execute(*queries.next_outbox_ready_time(now))).scalar_one()
        return queries.aggregate_time(value, self.conn.dialect)

    async def next_due_at(self) -> datetime | None:
        """The earliest moment any pending request needs the sweeper."""
        value = (await self.conn.execute(*queries.next_due_time())).scalar_one()
        return queries.aggregate_time(value, self.conn.dialect)

    async def deliveries(self, request_id: str) -> list[DeliveryRecord]:
        rows = await self.conn.execute(*queries.deliveries_of(request_id))
        return [delivery_from_row(row) for row in rows]

    async def idempotency_key(self, agent: str, key: str) -> tuple[str, str] | None:
        """(request id, command fingerprint) recorded for an agent's key, if any."""
        row = (await self.conn.execute(*queries.idempotency_record(agent, key))).first()
        return None if row is None else (str(row.request_id), str(row.body_sha256))

    async def audit_entries(
        self, *, after_seq: int = 0, limit: int | None = None, request_id: str | None = None
    ) -> list[AuditEntry]:
        query = queries.audit_entries(after_seq=after_seq, limit=limit, request_id=request_id)
        return [audit_from_row(row) for row in await self.conn.execute(*query)]

    async def audit_head(self) -> tuple[int, str]:
        row = (await self.conn.execute(*queries.audit_head())).one()
        return int(row.seq), str(row.hash)

    async def outbox_counts(self) -> dict[str, int]:
        rows = await self.conn.execute(*queries.outbox_counts())
        return {str(state): int(count) for state, count in rows}
