"""The counts ``signoff status`` shows (:mod:`bot.status`): pending requests by policy and
level, the outbox backlog by destination, and the newest audit entry of a kind.

Functions of :class:`~approvals.store.reads.SyncReads`: run them together in one
``store.query`` to read them all in one snapshot. Times come back as aware UTC, aggregates
included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from approvals.audit import AuditEntry
from approvals.machine import Status
from approvals.store.queries import aggregate_time
from approvals.store.reads import SyncReads
from approvals.store.rows import audit_from_row
from approvals.tables import AUDIT, OUTBOX, REQUESTS


@dataclass(frozen=True)
class PendingCount:
    """How many requests of one policy are pending at one escalation level (0-based)."""

    policy: str
    level: int
    count: int
    next_due_at: datetime | None
    """The soonest moment one of them needs the sweeper."""
    earliest_deadline: datetime | None
    """The soonest final deadline among them (never ``None`` for a pending request)."""


@dataclass(frozen=True)
class OutboxBacklog:
    """How many outbox rows of one destination are in one state (``pending`` or ``dead``)."""

    destination: str
    state: str
    count: int
    oldest_created_at: datetime | None


def pending_counts(reads: SyncReads) -> list[PendingCount]:
    """Pending requests grouped by policy and level, in that order."""
    query = (
        select(
            REQUESTS.c.policy_name,
            REQUESTS.c.level,
            func.count(),
            func.min(REQUESTS.c.next_due_at),
            func.min(REQUESTS.c.deadline),
        )
        .where(REQUESTS.c.status == Status.PENDING.value)
        .group_by(REQUESTS.c.policy_name, REQUESTS.c.level)
        .order_by(REQUESTS.c.policy_name, REQUESTS.c.level)
    )
    dialect = reads.conn.dialect
    return [
        PendingCount(
            policy=str(policy),
            level=int(level),
            count=int(count),
            next_due_at=aggregate_time(next_due, dialect),
            earliest_deadline=aggregate_time(deadline, dialect),
        )
        for policy, level, count, next_due, deadline in reads.conn.execute(query)
    ]


def outbox_backlog(reads: SyncReads) -> list[OutboxBacklog]:
    """Outbox rows waiting to be delivered (``pending``) or given up on (``dead``), grouped
    by destination and state."""
    query = (
        select(OUTBOX.c.destination, OUTBOX.c.state, func.count(), func.min(OUTBOX.c.created_at))
        .where(OUTBOX.c.state.in_(("pending", "dead")))
        .group_by(OUTBOX.c.destination, OUTBOX.c.state)
    )
    dialect = reads.conn.dialect
    return [
        OutboxBacklog(
            destination=str(destination),
            state=str(state),
            count=int(count),
            oldest_created_at=aggregate_time(oldest, dialect),
        )
        for destination, state, count, oldest in reads.conn.execute(query)
    ]


def last_audit_entry(reads: SyncReads, kind: str) -> AuditEntry | None:
    """The newest audit entry of ``kind``, if there is one."""
    query = select(AUDIT).where(AUDIT.c.kind == kind).order_by(AUDIT.c.seq.desc()).limit(1)
    row = reads.conn.execute(query).first()
    return None if row is None else audit_from_row(row)
