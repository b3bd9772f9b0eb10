"""The statements both sides of the store run: the async readers and the writer's transaction.

Each function returns a :data:`Query`, a statement and its parameters, for
:mod:`approvals.store.reads` and :mod:`approvals.store.transaction` to execute
(``conn.execute(*query)``) and map with :mod:`approvals.store.rows`, so that a query is
written once however it is run. The statements on the hot paths are built once, with bound
parameters, so running one costs a lookup in SQLAlchemy's compiled cache and no building.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Executable,
    Row,
    Select,
    Text,
    bindparam,
    case,
    cast,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Dialect

from approvals.machine import Status
from approvals.model import SYSTEM_PLATFORM, ApprovalRequest, CastVote
from approvals.store.rows import request_from_row, vote_from_row
from approvals.tables import (
    AGENT_KEYS,
    AUDIT,
    AUDIT_HEAD,
    DELIVERIES,
    DESTINATIONS,
    IDEMPOTENCY,
    OPEN_REQUESTS,
    OUTBOX,
    REQUESTS,
    VOTES,
    WEB_SESSIONS,
    UTCDateTime,
)

Query = tuple[Executable, dict[str, Any]]
"""A statement and the values of its bound parameters."""

REQUEST_COLUMNS = [
    # The policy snapshot comes back as its JSON text: many requests share one snapshot,
    # and rows.request_from_row parses each text once (see rows.policy_from_snapshot).
    cast(column, Text).label(column.name) if column.name == "policy_snapshot" else column
    for column in REQUESTS.c
]

_PENDING = Status.PENDING.value

_REQUEST_WITH_VOTES = (
    select(
        *REQUEST_COLUMNS,
        VOTES.c.id.label("vote_id"),
        VOTES.c.person,
        VOTES.c.verdict,
        VOTES.c.platform,
        VOTES.c.identity,
        VOTES.c.reason,
        VOTES.c.cast_at,
        VOTES.c.payload_sha256.label("vote_payload_sha256"),
        VOTES.c.grant_seconds,
    )
    .select_from(REQUESTS.outerjoin(VOTES, VOTES.c.request_id == REQUESTS.c.id))
    .where(REQUESTS.c.id == bindparam("request_id"))
    .order_by(VOTES.c.id)
)
_REQUEST_WITH_VOTES_LOCKED = _REQUEST_WITH_VOTES.with_for_update(of=REQUESTS)


def request_with_votes(request_id: str, *, lock: bool = False) -> Query:
    """One request and its votes in one query: a row per vote (one row with no vote)."""
    statement = _REQUEST_WITH_VOTES_LOCKED if lock else _REQUEST_WITH_VOTES
    return statement, {"request_id": request_id}


def request_from_joined_rows(rows: Sequence[Row[Any]]) -> ApprovalRequest | None:
    """The request :func:`request_with_votes` found, or ``None``."""
    if not rows:
        return None
    votes = [vote_from_row(row) for row in rows if row.vote_id is not None]
    return request_from_row(rows[0], votes)


_VOTES_OF = (
    # The vote's payload hash under its own label, as in the joined query above.
    select(VOTES, VOTES.c.payload_sha256.label("vote_payload_sha256"))
    .where(VOTES.c.request_id.in_(bindparam("request_ids", expanding=True)))
    .order_by(VOTES.c.id)
)


def votes_of(request_ids: Sequence[str]) -> Query:
    return _VOTES_OF, {"request_ids": list(request_ids)}


def requests_with_vote_rows(
    request_rows: Sequence[Row[Any]], vote_rows: Iterable[Row[Any]]
) -> list[ApprovalRequest]:
    """Requests from their rows and the rows :func:`votes_of` found for them."""
    found: dict[str, list[CastVote]] = {row.id: [] for row in request_rows}
    for vote in vote_rows:
        found[vote.request_id].append(vote_from_row(vote))
    return [request_from_row(row, found[row.id]) for row in request_rows]


def listed_requests(
    *,
    agent: str | None = None,
    status: Status | None = None,
    limit: int = 100,
    before: datetime | None = None,
) -> Query:
    """Newest first, optionally for one agent and one status."""
    query = select(*REQUEST_COLUMNS)
    if agent is not None:
        query = query.where(REQUESTS.c.agent == agent)
    if status is not None:
        query = query.where(REQUESTS.c.status == status.value)
    if before is not None:
        query = query.where(REQUESTS.c.created_at < before)
    return query.order_by(REQUESTS.c.created_at.desc(), REQUESTS.c.id).limit(limit), {}


_DUE_REQUESTS = (
    select(*REQUEST_COLUMNS)
    .where(REQUESTS.c.status == _PENDING, REQUESTS.c.next_due_at <= bindparam("now"))
    .order_by(REQUESTS.c.next_due_at, REQUESTS.c.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)


def due_requests(now: datetime, limit: int) -> Query:
    """Pending requests whose next due time has come, oldest due first; on PostgreSQL rows
    another process is already sweeping are skipped, not waited for."""
    return _DUE_REQUESTS, {"now": now, "limit": limit}


_OPEN_COUNT = select(func.coalesce(func.max(OPEN_REQUESTS.c.open), 0)).where(
    OPEN_REQUESTS.c.agent == bindparam("agent")
)


def open_count(agent: str) -> Query:
    """The agent's pending requests, as the writer counted them (see ``OpenRequestsRow``)."""
    return _OPEN_COUNT, {"agent": agent}


_PENDING_TWIN = (
    select(REQUESTS.c.id)
    .where(
        REQUESTS.c.agent == bindparam("agent"),
        REQUESTS.c.status == _PENDING,
        REQUESTS.c.payload_sha256 == bindparam("payload_sha256"),
        REQUESTS.c.requested_by.is_not_distinct_from(bindparam("requested_by")),
        REQUESTS.c.callback_url.is_not_distinct_from(bindparam("callback_url")),
    )
    .order_by(REQUESTS.c.created_at, REQUESTS.c.id)
    .limit(1)
)


def pending_twin(request: ApprovalRequest) -> Query:
    """The oldest pending request of the same agent asking the same thing as ``request``:
    the same payload (action and params), on behalf of the same person, reporting to the
    same callback URL."""
    return _PENDING_TWIN, {
        "agent": request.agent,
        "payload_sha256": request.payload_sha256,
        "requested_by": request.requested_by,
        "callback_url": request.callback_url,
    }


_LAST_DENIAL_BY_PEOPLE = (
    select(REQUESTS.c.id)
    .where(
        REQUESTS.c.agent == bindparam("agent"),
        REQUESTS.c.status == Status.DENIED.value,
        REQUESTS.c.payload_sha256 == bindparam("payload_sha256"),
        REQUESTS.c.decided_at > bindparam("since"),
        # People's denials only: not a timeout, a policy's own decision, or an earlier
        # repeat denied at once (each of those has the platform "system").
        REQUESTS.c.decision["platform"].as_string() != SYSTEM_PLATFORM,
    )
    .order_by(REQUESTS.c.decided_at.desc(), REQUESTS.c.id.desc())
    .limit(1)
)


def last_denial_by_people(agent: str, payload_sha256: str, since: datetime) -> Query:
    """The agent's latest request with this payload that people denied at ``since`` or
    later (the agent, status and payload index narrows it to those very requests)."""
    return _LAST_DENIAL_BY_PEOPLE, {
        "agent": agent,
        "payload_sha256": payload_sha256,
        "since": since,
    }


_DELIVERIES_OF = (
    select(DELIVERIES)
    .where(DELIVERIES.c.request_id == bindparam("request_id"))
    .order_by(DELIVERIES.c.destination)
)
_DELIVERIES_OF_MANY = (
    select(DELIVERIES)
    .where(DELIVERIES.c.request_id.in_(bindparam("request_ids", expanding=True)))
    .order_by(DELIVERIES.c.request_id, DELIVERIES.c.destination)
)


def deliveries_of(request_id: str) -> Query:
    return _DELIVERIES_OF, {"request_id": request_id}


def deliveries_of_many(request_ids: Sequence[str]) -> Query:
    return _DELIVERIES_OF_MANY, {"request_ids": list(request_ids)}


_IDEMPOTENCY_RECORD = select(IDEMPOTENCY).where(
    IDEMPOTENCY.c.agent == bindparam("agent"), IDEMPOTENCY.c.key == bindparam("key")
)


def idempotency_record(agent: str, key: str) -> Query:
    return _IDEMPOTENCY_RECORD, {"agent": agent, "key": key}


def audit_entries(
    *, after_seq: int = 0, limit: int | None = None, request_id: str | None = None
) -> Query:
    query = select(AUDIT).where(AUDIT.c.seq > after_seq).order_by(AUDIT.c.seq)
    if request_id is not None:
        query = query.where(AUDIT.c.request_id == request_id)
    if limit is not None:
        query = query.limit(limit)
    return query, {}


_AUDIT_HEAD = select(AUDIT_HEAD.c.seq, AUDIT_HEAD.c.hash).where(AUDIT_HEAD.c.id == 1)
_AUDIT_HEAD_LOCKED = _AUDIT_HEAD.with_for_update()
_SET_AUDIT_HEAD = (
    update(AUDIT_HEAD)
    .where(AUDIT_HEAD.c.id == 1)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)


def audit_head(*, lock: bool = False) -> Query:
    return (_AUDIT_HEAD_LOCKED if lock else _AUDIT_HEAD), {}


def set_audit_head(seq: int, digest: str) -> Query:
    return _SET_AUDIT_HEAD, {"new_seq": seq, "new_hash": digest}


def outbox_counts() -> Query:
    return select(OUTBOX.c.state, func.count()).group_by(OUTBOX.c.state), {}


_NEXT_DUE_TIME = select(func.min(REQUESTS.c.next_due_at)).where(REQUESTS.c.status == _PENDING)


def next_due_time() -> Query:
    """The earliest moment any pending request needs the sweeper."""
    return _NEXT_DUE_TIME, {}


_READY_AT = case(
    (DESTINATIONS.c.not_before > OUTBOX.c.next_attempt_at, DESTINATIONS.c.not_before),
    else_=OUTBOX.c.next_attempt_at,
)
_NEXT_OUTBOX_READY_TIME = (
    select(func.min(_READY_AT))
    .select_from(OUTBOX.outerjoin(DESTINATIONS, DESTINATIONS.c.key == OUTBOX.c.destination))
    .where(OUTBOX.c.state == "pending", bindparam("now", type_=UTCDateTime()) < _READY_AT)
)


def next_outbox_ready_time(now: datetime) -> Query:
    """The earliest moment after ``now`` when a pending outbox row becomes sendable: its
    retry time, or its destination's "not before", whichever is later."""
    return _NEXT_OUTBOX_READY_TIME, {"now": now}


def _claimable_outbox() -> Select[Any]:
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
        .where(
            DESTINATIONS.c.key == OUTBOX.c.destination, DESTINATIONS.c.not_before > bindparam("now")
        )
        .exists()
    )
    return (
        select(OUTBOX)
        .where(
            OUTBOX.c.state == "pending",
            OUTBOX.c.next_attempt_at <= bindparam("now"),
            or_(OUTBOX.c.lease_until.is_(None), OUTBOX.c.lease_until < bindparam("now")),
            head_of_line,
            ~paused,
        )
        .order_by(OUTBOX.c.id)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True, of=OUTBOX)
    )


_CLAIMABLE_OUTBOX = _claimable_outbox()
_LEASE_OUTBOX = (
    update(OUTBOX)
    .where(OUTBOX.c.id.in_(bindparam("row_ids", expanding=True)))
    .values(lease_until=bindparam("lease_until"))
)


def claimable_outbox(now: datetime, limit: int) -> Query:
    """The head row of each ready destination.

    A row is ready when it is the oldest unfinished row of its destination (so each
    destination sees its messages in order), its retry time has come, nobody holds a live
    lease on it, and the destination is not paused (rate limit or Retry-After).
    """
    return _CLAIMABLE_OUTBOX, {"now": now, "limit": limit}


def lease_outbox(row_ids: Sequence[int], lease_until: datetime) -> Query:
    return _LEASE_OUTBOX, {"row_ids": list(row_ids), "lease_until": lease_until}


_AGENT_KEY = select(AGENT_KEYS).where(AGENT_KEYS.c.key_id == bindparam("key_id"))
_WEB_SESSION = select(WEB_SESSIONS).where(WEB_SESSIONS.c.session_sha256 == bindparam("digest"))


def agent_key(key_id: str) -> Query:
    return _AGENT_KEY, {"key_id": key_id}


def web_session(session_sha256: str) -> Query:
    return _WEB_SESSION, {"digest": session_sha256}


def aggregate_time(value: Any, dialect: Dialect) -> datetime | None:
    """An aggregate's time as aware UTC: aggregates bypass the column type, so SQLite hands
    back text or a naive value."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return UTCDateTime().process_result_value(parsed, dialect)
