"""Housekeeping: rows that have served their purpose are deleted, so the database stays small.

What goes, and when:
- web inbox sign-in links, a day after they expired (used or not);
- web inbox sessions, once expired;
- outbox rows that were sent or dead-lettered, ``FINISHED_OUTBOX_RETENTION`` after finishing
  (the audit log keeps the record of every delivery and every dead letter);
- ``Idempotency-Key`` reservations, ``IDEMPOTENCY_RETENTION`` after the create: a retry later
  than that makes a new request;
- spent decision links (an email's Approve / Deny), once their request is final: a vote on
  it is refused whatever link it came through.

Requests, votes and the audit log are never deleted here. Deletes are idempotent, so every
process sharing a database may run them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from approvals.store import SqlStore, WriteTx, housekeeping

LOGIN_TOKEN_RETENTION = timedelta(days=1)
FINISHED_OUTBOX_RETENTION = timedelta(days=7)
IDEMPOTENCY_RETENTION = timedelta(days=7)
PURGE_INTERVAL = timedelta(hours=1)


@dataclass(frozen=True)
class Purged:
    """How many rows of each kind one purge removed."""

    login_tokens: int
    web_sessions: int
    outbox_rows: int
    idempotency_keys: int
    spent_links: int

    @property
    def total(self) -> int:
        return (
            self.login_tokens
            + self.web_sessions
            + self.outbox_rows
            + self.idempotency_keys
            + self.spent_links
        )


async def purge_expired(store: SqlStore, now: datetime) -> Purged:
    """Delete what has outlived its use as of ``now``, in one short transaction."""

    def purge(tx: WriteTx) -> Purged:
        return Purged(
            login_tokens=housekeeping.delete_login_tokens_expired_before(
                tx, now - LOGIN_TOKEN_RETENTION
            ),
            web_sessions=housekeeping.delete_web_sessions_expired_by(tx, now),
            outbox_rows=housekeeping.delete_outbox_rows_finished_before(
                tx, now - FINISHED_OUTBOX_RETENTION
            ),
            idempotency_keys=housekeeping.delete_idempotency_keys_created_before(
                tx, now - IDEMPOTENCY_RETENTION
            ),
            spent_links=housekeeping.delete_spent_links_of_final_requests(tx),
        )

    return await store.run(purge)
