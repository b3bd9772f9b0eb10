"""The statements of housekeeping: deleting rows that have served their purpose
(:mod:`approvals.retention`), and moving stored times when the wall clock was stepped
(:mod:`approvals.clocksteps`).

Those modules decide what goes and what moves, and by how much; these functions run the
statements inside their command's :class:`~approvals.store.transaction.WriteTx`. Each
delete returns how many rows it removed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, select, update

from approvals.machine import Status
from approvals.store.reads import SyncReads
from approvals.store.transaction import WriteTx
from approvals.tables import (
    AUDIT,
    DESTINATIONS,
    IDEMPOTENCY,
    LOGIN_TOKENS,
    OUTBOX,
    REQUESTS,
    SPENT_LINKS,
    WEB_SESSIONS,
)

# -- retention --------------------------------------------------------------------------------


def delete_login_tokens_expired_before(tx: WriteTx, moment: datetime) -> int:
    """Sign-in tokens (used or not) whose expiry is earlier than ``moment``."""
    return int(
        tx.conn.execute(delete(LOGIN_TOKENS).where(LOGIN_TOKENS.c.expires_at < moment)).rowcount
    )


def delete_web_sessions_expired_by(tx: WriteTx, moment: datetime) -> int:
    """Web inbox sessions whose expiry is ``moment`` or earlier."""
    return int(
        tx.conn.execute(delete(WEB_SESSIONS).where(WEB_SESSIONS.c.expires_at <= moment)).rowcount
    )


def delete_outbox_rows_finished_before(tx: WriteTx, moment: datetime) -> int:
    """Outbox rows sent or dead-lettered earlier than ``moment``."""
    return int(
        tx.conn.execute(
            delete(OUTBOX).where(
                OUTBOX.c.state != "pending",
                OUTBOX.c.finished_at.is_not(None),
                OUTBOX.c.finished_at < moment,
            )
        ).rowcount
    )


def delete_idempotency_keys_created_before(tx: WriteTx, moment: datetime) -> int:
    """``Idempotency-Key`` reservations made earlier than ``moment``."""
    return int(
        tx.conn.execute(delete(IDEMPOTENCY).where(IDEMPOTENCY.c.created_at < moment)).rowcount
    )


def delete_spent_links_of_final_requests(tx: WriteTx) -> int:
    """The spent decision links of requests that are final (a vote on one is refused
    whatever link it came through)."""
    final = select(REQUESTS.c.id).where(REQUESTS.c.status != Status.PENDING.value)
    spent = delete(SPENT_LINKS).where(SPENT_LINKS.c.request_id.in_(final))
    return int(tx.conn.execute(spent).rowcount)


# -- clock steps ------------------------------------------------------------------------------


def latest_audit_data(reads: SyncReads, kind: str) -> str | None:
    """The data (canonical JSON text) of the newest audit entry of ``kind``, if any."""
    return reads.conn.execute(
        select(AUDIT.c.data).where(AUDIT.c.kind == kind).order_by(AUDIT.c.seq.desc()).limit(1)
    ).scalar_one_or_none()


def move_pending_requests(tx: WriteTx, *, created_before: datetime, by: timedelta) -> int:
    """Move the created, deadline, next due and next reminder times of every pending request
    created before ``created_before`` by ``by``, and bump each one's version (so that a
    transaction that read it before cannot write its old times back). Returns how many
    requests moved."""
    rows = tx.conn.execute(
        select(
            REQUESTS.c.id,
            REQUESTS.c.created_at,
            REQUESTS.c.deadline,
            REQUESTS.c.next_due_at,
            REQUESTS.c.next_remind_at,
            REQUESTS.c.version,
        ).where(REQUESTS.c.status == Status.PENDING.value, REQUESTS.c.created_at < created_before)
    ).all()
    if not rows:
        return 0
    tx.conn.execute(
        update(REQUESTS)
        .where(REQUESTS.c.id == bindparam("request_id"))
        .values(
            created_at=bindparam("moved_created_at"),
            deadline=bindparam("moved_deadline"),
            next_due_at=bindparam("moved_next_due_at"),
            next_remind_at=bindparam("moved_next_remind_at"),
            version=bindparam("new_version"),
        ),
        [
            {
                "request_id": row.id,
                "moved_created_at": row.created_at + by,
                "moved_deadline": row.deadline + by,
                "moved_next_due_at": _moved(row.next_due_at, by),
                "moved_next_remind_at": _moved(row.next_remind_at, by),
                "new_version": row.version + 1,
            }
            for row in rows
        ],
    )
    return len(rows)


def move_pending_messages(tx: WriteTx, by: timedelta) -> None:
    """Move the retry time and the lease of every pending outbox row by ``by``."""
    queued = tx.conn.execute(
        select(OUTBOX.c.id, OUTBOX.c.next_attempt_at, OUTBOX.c.lease_until).where(
            OUTBOX.c.state == "pending"
        )
    ).all()
    if queued:
        tx.conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id == bindparam("row_id"))
            .values(
                next_attempt_at=bindparam("moved_attempt_at"),
                lease_until=bindparam("moved_lease_until"),
            ),
            [
                {
                    "row_id": row.id,
                    "moved_attempt_at": row.next_attempt_at + by,
                    "moved_lease_until": _moved(row.lease_until, by),
                }
                for row in queued
            ],
        )


def move_destination_pauses(tx: WriteTx, by: timedelta) -> None:
    """Move every destination's "not before" by ``by``."""
    paused = tx.conn.execute(select(DESTINATIONS.c.key, DESTINATIONS.c.not_before)).all()
    if paused:
        tx.conn.execute(
            update(DESTINATIONS)
            .where(DESTINATIONS.c.key == bindparam("destination"))
            .values(not_before=bindparam("moved_not_before")),
            [{"destination": row.key, "moved_not_before": row.not_before + by} for row in paused],
        )


def _moved(moment: datetime | None, by: timedelta) -> datetime | None:
    return None if moment is None else moment + by
