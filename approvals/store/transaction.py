"""The writer's transaction: every state change runs through one :class:`WriteTx`.

A command is a plain function of a :class:`WriteTx`; the writer
(:mod:`approvals.store.writer`) runs every command waiting in its queue inside one database
transaction, on one connection, so a batch shares one commit. The batch's audit entries
are gathered as they are appended and chained just before the commit: the head row is read
(and on PostgreSQL locked) once, the entries are numbered and hashed one after another from
it, and they are written together with the new head. Other processes' appends wait for the
head only while this batch writes its entries and commits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Executable, Table, Update, bindparam, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from approvals.audit import AuditEntry, entry_hash
from approvals.errors import ConcurrentUpdateError
from approvals.machine import Status
from approvals.model import ApprovalRequest, CastVote
from approvals.store import queries
from approvals.store.notify import REQUEST_FINAL_CHANNEL
from approvals.store.reads import SyncReads
from approvals.store.rows import (
    OutboxItem,
    changed_request_values,
    mutable_values,
    outbox_item_from_row,
    request_values,
)
from approvals.tables import (
    AUDIT,
    DELIVERIES,
    DESTINATIONS,
    IDEMPOTENCY,
    OPEN_REQUESTS,
    OUTBOX,
    REQUESTS,
    VOTES,
)
from signoff_client.canonical import canonical_json

# The statements built once (see approvals.store.queries for why).
_INSERT_AUDIT = insert(AUDIT)
_INSERT_REQUEST = insert(REQUESTS)
_INSERT_VOTE = insert(VOTES)
_INSERT_OUTBOX = insert(OUTBOX)
_POSTPONE = (
    update(REQUESTS)
    .where(REQUESTS.c.id == bindparam("row_id"))
    .values(next_due_at=bindparam("due_at"))
)
_SET_DELIVERY_REF = (
    update(DELIVERIES)
    .where(
        DELIVERIES.c.request_id == bindparam("row_request"),
        DELIVERIES.c.destination == bindparam("row_destination"),
    )
    .values(ref=bindparam("ref"), updated_at=bindparam("at"))
)
_FINISH_OUTBOX = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("row_id"))
    .values(
        state=bindparam("new_state"),
        finished_at=bindparam("at"),
        lease_until=None,
        last_error=bindparam("error"),
    )
)
_RETRY_OUTBOX = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("row_id"))
    .values(
        attempts=bindparam("attempts_now"),
        next_attempt_at=bindparam("at"),
        lease_until=None,
        last_error=bindparam("error"),
    )
)
_DESTINATION_PAUSE = select(DESTINATIONS.c.not_before).where(
    DESTINATIONS.c.key == bindparam("row_key")
)
_NEW_DESTINATION_PAUSE = insert(DESTINATIONS)
_SET_DESTINATION_PAUSE = (
    update(DESTINATIONS)
    .where(DESTINATIONS.c.key == bindparam("row_key"))
    .values(not_before=bindparam("until"))
)


@functools.cache
def _request_update(columns: tuple[str, ...]) -> Update:
    """The conditional update of a request's ``columns`` (one statement per column set)."""
    return (
        update(REQUESTS)
        .where(REQUESTS.c.id == bindparam("row_id"), REQUESTS.c.version == bindparam("row_version"))
        .values({name: bindparam(f"new_{name}", type_=REQUESTS.c[name].type) for name in columns})
    )


def _insert_for(dialect_name: str) -> Callable[[Table], postgresql.Insert | sqlite.Insert]:
    return postgresql.insert if dialect_name == "postgresql" else sqlite.insert


@functools.cache
def _open_count_upsert(dialect_name: str) -> Executable:
    """Add ``change`` to an agent's open count, starting it at ``initial``."""
    statement = _insert_for(dialect_name)(OPEN_REQUESTS).values(
        agent=bindparam("agent"), open=bindparam("initial")
    )
    return statement.on_conflict_do_update(
        index_elements=[OPEN_REQUESTS.c.agent],
        set_={"open": OPEN_REQUESTS.c.open + bindparam("change")},
    )


@functools.cache
def _claim_open_slot(dialect_name: str) -> Executable:
    """Add one to an agent's open count and return the new count."""
    statement = _insert_for(dialect_name)(OPEN_REQUESTS).values(agent=bindparam("agent"), open=1)
    return statement.on_conflict_do_update(
        index_elements=[OPEN_REQUESTS.c.agent], set_={"open": OPEN_REQUESTS.c.open + 1}
    ).returning(OPEN_REQUESTS.c.open)


@functools.cache
def _new_delivery(dialect_name: str) -> Executable:
    return _insert_for(dialect_name)(DELIVERIES).on_conflict_do_nothing()


@dataclass(frozen=True)
class QueuedMessage:
    """An outbox row to add with :meth:`WriteTx.enqueue_many`."""

    request_id: str
    destination: str
    kind: str
    at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class _PendingEntry:
    """An audit entry appended in this batch, not yet numbered and hashed."""

    at: datetime
    kind: str
    request_id: str | None
    actor: str
    data: str


@dataclass(frozen=True)
class _Mark:
    """Where a savepoint began: what to forget if it is rolled back."""

    pending_entries: int
    head: tuple[int, str] | None
    notified: frozenset[tuple[str, str]]
    messages_queued: int


class WriteTx(SyncReads):
    """One write transaction, shared by every command of a batch. Methods are synchronous:
    they run on the writer's connection (its own thread on SQLite)."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._head: tuple[int, str] | None = None
        self._entries: list[_PendingEntry] = []
        self._notified: dict[tuple[str, str], None] = {}
        self.messages_queued = 0
        """Outbox rows added in this transaction (the writer wakes the dispatcher if any)."""

    # -- reads inside the transaction (the rest: SyncReads) ----------------------------------

    def due_requests(self, now: datetime, limit: int) -> list[ApprovalRequest]:
        """Claim pending requests whose next due time has come, oldest due first."""
        rows = self.conn.execute(*queries.due_requests(now, limit)).all()
        if not rows:
            return []
        votes = self.conn.execute(*queries.votes_of([row.id for row in rows]))
        return queries.requests_with_vote_rows(rows, votes)

    # -- requests and votes ------------------------------------------------------------------

    def insert_request(self, request: ApprovalRequest, *, slot_claimed: bool = False) -> None:
        """Store a new request (pending, or already final when a policy decided it).

        A pending request counts toward its agent's open requests, unless
        :meth:`claim_open_slot` counted it already (``slot_claimed``).
        """
        self.conn.execute(_INSERT_REQUEST, request_values(request))
        if request.status is not Status.PENDING:
            self.notify(REQUEST_FINAL_CHANNEL, request.id)
        elif not slot_claimed:
            self._count_open(request.agent, +1)

    def claim_open_slot(self, agent: str, max_open: int) -> int | None:
        """Count one more pending request of ``agent`` unless it has ``max_open`` already.

        Returns ``None`` when the slot is claimed, else how many the agent has open. One
        statement: it locks the agent's count row until commit, which orders concurrent
        creates of one agent, in this process or another.
        """
        statement = _claim_open_slot(self.conn.dialect.name)
        opened = int(self.conn.execute(statement, {"agent": agent}).scalar_one())
        if opened <= max_open:
            return None
        self._count_open(agent, -1)
        return opened - 1

    def release_open_slot(self, agent: str) -> None:
        """Give back a slot :meth:`claim_open_slot` claimed for a request not stored after
        all."""
        self._count_open(agent, -1)

    def insert_requests(self, requests: Sequence[ApprovalRequest]) -> None:
        """Insert many new requests in one statement (seeding, imports)."""
        if not requests:
            return
        self.conn.execute(_INSERT_REQUEST, [request_values(request) for request in requests])
        opened: dict[str, int] = {}
        for request in requests:
            if request.status is Status.PENDING:
                opened[request.agent] = opened.get(request.agent, 0) + 1
        for agent, count in opened.items():
            self._count_open(agent, count)

    def _count_open(self, agent: str, change: int) -> None:
        statement = _open_count_upsert(self.conn.dialect.name)
        self.conn.execute(statement, {"agent": agent, "initial": max(change, 0), "change": change})

    def update_request(self, before: ApprovalRequest, after: ApprovalRequest) -> None:
        """The conditional write: ``after`` replaces ``before`` only if nobody changed the row
        since ``before`` was read. Only the columns that differ are written."""
        self.update_requests([(before, after)])

    def update_requests(self, changes: Sequence[tuple[ApprovalRequest, ApprovalRequest]]) -> None:
        """Many conditional writes in one statement: each ``(before, after)`` pair as in
        :meth:`update_request` (the sweeper's set-based steps)."""
        if not changes:
            return
        columns = tuple(
            sorted({name for pair in changes for name in changed_request_values(*pair)})
        )
        rows = []
        for before, after in changes:
            values = mutable_values(after)
            row = {f"new_{name}": values[name] for name in columns}
            rows.append(row | {"row_id": before.id, "row_version": before.version})
        statement = _request_update(columns)
        result = self.conn.execute(statement, rows[0] if len(rows) == 1 else rows)
        # Where the driver cannot count an executemany's rows, the rows were claimed with
        # FOR UPDATE by this transaction, so nobody else changed them.
        counted = len(rows) == 1 or self.conn.dialect.supports_sane_multi_rowcount
        if counted and result.rowcount != len(rows):
            raise ConcurrentUpdateError(f"request {changes[0][0].id} changed concurrently")
        finished: dict[str, int] = {}
        for before, after in changes:
            if after.status.is_final:
                self.notify(REQUEST_FINAL_CHANNEL, after.id)
                if before.status is Status.PENDING:
                    finished[after.agent] = finished.get(after.agent, 0) + 1
        for agent, count in finished.items():
            self._count_open(agent, -count)

    def postpone(self, request_id: str, until: datetime) -> None:
        """Look at a pending request again at ``until`` (after a failed deadline step)."""
        self.conn.execute(_POSTPONE, {"row_id": request_id, "due_at": until})

    def insert_vote(self, request_id: str, vote: CastVote) -> None:
        self.conn.execute(
            _INSERT_VOTE,
            {
                "request_id": request_id,
                "person": vote.person,
                "verdict": vote.verdict.value,
                "platform": vote.platform,
                "identity": vote.identity,
                "reason": vote.reason,
                "cast_at": vote.cast_at,
                "payload_sha256": vote.payload_sha256,
                "grant_seconds": (
                    None if vote.grant_for is None else int(vote.grant_for.total_seconds())
                ),
            },
        )

    def lock_agent(self, agent: str) -> None:
        """Serialize work on ``agent`` (or any name) until commit: the flood guard's digest,
        webhook secrets, the first receipt key (PostgreSQL; SQLite has one writer)."""
        if self.is_postgres:
            self.conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:agent))"), {"agent": agent}
            )

    def agent_key_is_live(self, key_id: str, agent: str) -> bool:
        """Whether the API key ``key_id`` exists, is not revoked, and is ``agent``'s."""
        row = self.agent_key(key_id)
        return row is not None and row.revoked_at is None and row.agent == agent

    def claim_idempotency_key(
        self, agent: str, key: str, fingerprint: str, request_id: str, at: datetime
    ) -> None:
        """Reserve an ``Idempotency-Key``; raises ``IntegrityError`` when it is taken."""
        self.conn.execute(
            insert(IDEMPOTENCY).values(
                agent=agent, key=key, body_sha256=fingerprint, request_id=request_id, created_at=at
            )
        )

    # -- the audit chain ---------------------------------------------------------------------

    def lock_audit_chain(self) -> tuple[int, str]:
        """Read the chain's head (locking it on PostgreSQL until commit), once per batch.

        Holding the head orders this transaction's entries after every other process's.
        """
        if self._head is None:
            row = self.conn.execute(*queries.audit_head(lock=True)).one()
            self._head = (int(row.seq), str(row.hash))
        return self._head

    def append_audit(
        self,
        kind: str,
        *,
        at: datetime,
        actor: str,
        request_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Append one entry to the chain. It is numbered, hashed and written with the
        batch's other entries just before the commit (:meth:`flush`), so the chain's head is
        held (locked, on PostgreSQL) only for that moment."""
        self._entries.append(
            _PendingEntry(
                at=at.astimezone(UTC),  # hashed as stored: the column holds UTC
                kind=str(kind),  # a StrEnum hashes as its text
                request_id=request_id,
                actor=actor,
                data=canonical_json(data or {}).decode("utf-8"),
            )
        )

    # -- notifications -----------------------------------------------------------------------

    def notify(self, channel: str, payload: str = "") -> None:
        """Tell every listening process, once this transaction commits (PostgreSQL only).

        Notifications are gathered and sent together just before the commit: one round trip
        per batch. Identical ones are sent once. A notification is a hint to re-read, never
        the change itself.
        """
        if self.is_postgres:
            self._notified.setdefault((channel, payload))

    # -- outbox and deliveries ---------------------------------------------------------------

    def enqueue(
        self,
        *,
        request_id: str,
        destination: str,
        kind: str,
        at: datetime,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Add an outbox row; it is delivered after every earlier row for the destination."""
        self.enqueue_many([QueuedMessage(request_id, destination, kind, at, payload or {})])

    def enqueue_many(self, rows: Sequence[QueuedMessage]) -> None:
        """Add several outbox rows in one statement, in the order given."""
        if not rows:
            return
        self.messages_queued += len(rows)
        values = [
            {
                "destination": row.destination,
                "kind": row.kind,
                "request_id": row.request_id,
                "payload": row.payload,
                "state": "pending",
                "attempts": 0,
                "created_at": row.at,
                "next_attempt_at": row.at,
            }
            for row in rows
        ]
        self.conn.execute(_INSERT_OUTBOX, values[0] if len(values) == 1 else values)

    def add_delivery(self, request_id: str, destination: str, level: int, at: datetime) -> bool:
        """Record that a card goes to ``destination``. False if the request already has one."""
        values = {
            "request_id": request_id,
            "destination": destination,
            "level": level,
            "ref": None,
            "updated_at": at,
        }
        return bool(self.conn.execute(_new_delivery(self.conn.dialect.name), values).rowcount == 1)

    def set_delivery_ref(
        self, request_id: str, destination: str, ref: dict[str, Any], at: datetime
    ) -> None:
        self.conn.execute(
            _SET_DELIVERY_REF,
            {"row_request": request_id, "row_destination": destination, "ref": ref, "at": at},
        )

    def claim_outbox(self, now: datetime, lease_until: datetime, limit: int) -> list[OutboxItem]:
        """Lease the head row of each ready destination (see :func:`queries.claimable_outbox`)."""
        rows = self.conn.execute(*queries.claimable_outbox(now, limit)).all()
        if not rows:
            return []
        self.conn.execute(*queries.lease_outbox([row.id for row in rows], lease_until))
        return [outbox_item_from_row(row) for row in rows]

    def finish_outbox(
        self, item_id: int, *, state: str, at: datetime, error: str | None = None
    ) -> None:
        """Mark a row sent or dead (dead-lettered). Both are final."""
        self.conn.execute(
            _FINISH_OUTBOX, {"row_id": item_id, "new_state": state, "at": at, "error": error}
        )

    def retry_outbox(self, item_id: int, *, attempts: int, at: datetime, error: str) -> None:
        self.conn.execute(
            _RETRY_OUTBOX, {"row_id": item_id, "attempts_now": attempts, "at": at, "error": error}
        )

    def pause_destination(self, key: str, until: datetime) -> None:
        """Send nothing to ``key`` before ``until`` (never moves an existing pause earlier)."""
        current = self.conn.execute(_DESTINATION_PAUSE, {"row_key": key}).scalar_one_or_none()
        if current is None:
            self.conn.execute(_NEW_DESTINATION_PAUSE, {"key": key, "not_before": until})
        elif current < until:
            self.conn.execute(_SET_DESTINATION_PAUSE, {"row_key": key, "until": until})

    # -- the batch's frame (used by the writer) ----------------------------------------------

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Run a block that may fail without failing the rest of the transaction: on an
        exception its writes, audit entries and notifications are undone, and it re-raises."""
        mark = _Mark(
            len(self._entries), self._head, frozenset(self._notified), self.messages_queued
        )
        nested = self.conn.begin_nested()
        try:
            yield
        except BaseException:
            nested.rollback()
            del self._entries[mark.pending_entries :]
            self._head = mark.head
            self._notified = {key: None for key in self._notified if key in mark.notified}
            self.messages_queued = mark.messages_queued
            raise
        nested.commit()

    def flush(self) -> None:
        """Write the batch's audit entries, chained from the head, and the chain's new head,
        and send the gathered notifications: the last statements before the commit."""
        if self._entries:
            seq, previous = self.lock_audit_chain()
            rows = []
            for pending in self._entries:
                seq += 1
                digest = entry_hash(
                    seq=seq,
                    at=pending.at,
                    kind=pending.kind,
                    request_id=pending.request_id,
                    actor=pending.actor,
                    data=pending.data,
                    prev_hash=previous,
                )
                entry = AuditEntry(
                    seq,
                    pending.at,
                    pending.kind,
                    pending.request_id,
                    pending.actor,
                    pending.data,
                    previous,
                    digest,
                )
                rows.append(dict(entry.__dict__))
                previous = digest
            self.conn.execute(_INSERT_AUDIT, rows)
            self.conn.execute(*queries.set_audit_head(seq, previous))
            self._head = (seq, previous)
            self._entries = []
        if self._notified:
            channels, payloads = zip(*self._notified, strict=True)
            self._notified = {}
            self.conn.execute(
                text(
                    "SELECT pg_notify(channel, payload) FROM unnest("
                    "CAST(:channels AS text[]), CAST(:payloads AS text[])) AS n(channel, payload)"
                ),
                {"channels": list(channels), "payloads": list(payloads)},
            )
