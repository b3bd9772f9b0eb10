"""The database tables, as SQLModel classes. Alembic migrations create and evolve them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import JSON, Column, DateTime, Index, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

JsonColumnType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as
    naive UTC (text that sorts correctly) and made aware again on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _when(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _json(*, nullable: bool = False) -> Any:
    return Field(sa_column=Column(JsonColumnType, nullable=nullable))


class RequestRow(SQLModel, table=True):
    """One approval request. ``version`` makes every transition a conditional write."""

    __tablename__ = "requests"
    __table_args__ = (
        # The sweeper's order (next_due_at, id) read straight off the index, no sort.
        Index("ix_requests_due", "status", "next_due_at", "id"),
        # An agent's requests by status; with the payload hash, the lookup of an identical
        # pending request (ApprovalService.create reuses it) reads only its twins.
        Index("ix_requests_agent_status_payload", "agent", "status", "payload_sha256"),
    )

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    agent: str = Field(sa_column=Column(String(200), nullable=False))
    action: str = Field(sa_column=Column(String(200), nullable=False))
    title: str = Field(sa_column=Column(Text, nullable=False))
    details: str = Field(sa_column=Column(Text, nullable=False))
    # Plain JSON, not JSONB: agent params may hold any JSON string, U+0000 included, which
    # PostgreSQL's jsonb refuses.
    params: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    payload_sha256: str = Field(sa_column=Column(String(64), nullable=False))
    requested_by: str | None = Field(default=None, sa_column=Column(String(200)))
    policy_name: str = Field(sa_column=Column(String(200), nullable=False))
    policy_snapshot: dict[str, Any] = _json()
    status: str = Field(sa_column=Column(String(16), nullable=False))
    level: int = Field(sa_column=Column(Integer, nullable=False))
    created_at: datetime = _when()
    deadline: datetime = _when()
    next_due_at: datetime | None = _when(nullable=True)
    next_remind_at: datetime | None = _when(nullable=True)
    decided_at: datetime | None = _when(nullable=True)
    decision: dict[str, Any] | None = _json(nullable=True)
    callback_url: str | None = Field(default=None, sa_column=Column(Text))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    # An approver's edit of params (plain JSON, like params) and its hash; NULL unless edited.
    edited_params: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    edited_payload_sha256: str | None = Field(default=None, sa_column=Column(String(64)))


class VoteRow(SQLModel, table=True):
    """A counted vote. The unique key makes "one vote per person" a database fact."""

    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("request_id", "person", name="uq_votes_request_person"),)

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    request_id: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    person: str = Field(sa_column=Column(String(200), nullable=False))
    verdict: str = Field(sa_column=Column(String(16), nullable=False))
    platform: str = Field(sa_column=Column(String(32), nullable=False))
    identity: str = Field(sa_column=Column(String(200), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(Text))
    cast_at: datetime = _when()
    # The payload the person voted on (the original or an edit); NULL for votes stored
    # before edits existed, which were all about the original.
    payload_sha256: str | None = Field(default=None, sa_column=Column(String(64)))
    # "Approve for ...": the length in seconds of the grant the person asked to give.
    grant_seconds: int | None = Field(default=None, sa_column=Column(Integer))


class AuditRow(SQLModel, table=True):
    """One entry of the hash-chained audit log. ``seq`` has no gaps; the chain has no forks."""

    __tablename__ = "audit_log"

    seq: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    at: datetime = _when()
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    request_id: str | None = Field(default=None, sa_column=Column(String(64), index=True))
    actor: str = Field(sa_column=Column(String(200), nullable=False))
    data: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(sa_column=Column(String(64), nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))


class AuditHeadRow(SQLModel, table=True):
    """The chain's tip. Locking this one row serializes appends across processes."""

    __tablename__ = "audit_head"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    seq: int = Field(sa_column=Column(Integer, nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))


class OutboxRow(SQLModel, table=True):
    """A message to send or edit, written in the transaction that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_state_destination", "state", "destination", "id"),
        # The flood guard counts a destination's recent cards (approvals.flood).
        Index("ix_outbox_destination_created", "destination", "created_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    destination: str = Field(sa_column=Column(String(300), nullable=False))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    request_id: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    payload: dict[str, Any] = _json()
    state: str = Field(sa_column=Column(String(16), nullable=False))
    attempts: int = Field(sa_column=Column(Integer, nullable=False))
    created_at: datetime = _when()
    next_attempt_at: datetime = _when()
    lease_until: datetime | None = _when(nullable=True)
    finished_at: datetime | None = _when(nullable=True)
    last_error: str | None = Field(default=None, sa_column=Column(Text))


class DeliveryRow(SQLModel, table=True):
    """A card of a request at one destination, with the platform's reference once sent."""

    __tablename__ = "deliveries"

    request_id: str = Field(sa_column=Column(String(64), primary_key=True))
    destination: str = Field(sa_column=Column(String(300), primary_key=True))
    level: int = Field(sa_column=Column(Integer, nullable=False))
    ref: dict[str, Any] | None = _json(nullable=True)
    updated_at: datetime = _when()


class DestinationRow(SQLModel, table=True):
    """Per-destination pacing: nothing is sent there before ``not_before``."""

    __tablename__ = "destinations"

    key: str = Field(sa_column=Column(String(300), primary_key=True))
    not_before: datetime = _when()


class OpenRequestsRow(SQLModel, table=True):
    """How many requests of one agent are pending; kept by the writer with every transition,
    so that ``max_open`` is checked without counting rows."""

    __tablename__ = "open_requests"

    agent: str = Field(sa_column=Column(String(200), primary_key=True))
    open: int = Field(sa_column=Column(Integer, nullable=False))


def table_of(model: type[SQLModel]) -> Table:
    """The SQLAlchemy ``Table`` behind a SQLModel class, typed."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


metadata = SQLModel.metadata
"""Every signoff table; what migrations are compared against."""

REQUESTS = table_of(RequestRow)
VOTES = table_of(VoteRow)
AUDIT = table_of(AuditRow)
AUDIT_HEAD = table_of(AuditHeadRow)
OUTBOX = table_of(OutboxRow)
DELIVERIES = table_of(DeliveryRow)
DESTINATIONS = table_of(DestinationRow)
OPEN_REQUESTS = table_of(OpenRequestsRow)


class AgentKeyRow(SQLModel, table=True):
    """An agent's API key. Only the SHA-256 of the secret part is stored."""

    __tablename__ = "agent_keys"

    key_id: str = Field(sa_column=Column(String(32), primary_key=True))
    agent: str = Field(sa_column=Column(String(200), nullable=False, index=True))
    secret_sha256: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = _when()
    revoked_at: datetime | None = _when(nullable=True)


class IdempotencyRow(SQLModel, table=True):
    """A create call's ``Idempotency-Key``: a replay returns the same request."""

    __tablename__ = "idempotency_keys"

    agent: str = Field(sa_column=Column(String(200), primary_key=True))
    key: str = Field(sa_column=Column(String(200), primary_key=True))
    body_sha256: str = Field(sa_column=Column(String(64), nullable=False))
    request_id: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = _when()


class LoginTokenRow(SQLModel, table=True):
    """A single-use web inbox sign-in link. Only the token's SHA-256 is stored."""

    __tablename__ = "login_tokens"

    token_sha256: str = Field(sa_column=Column(String(64), primary_key=True))
    person: str = Field(sa_column=Column(String(200), nullable=False))
    created_at: datetime = _when()
    expires_at: datetime = _when()
    used_at: datetime | None = _when(nullable=True)


class WebSessionRow(SQLModel, table=True):
    """A signed-in web inbox session; the cookie holds the token, the row its SHA-256."""

    __tablename__ = "web_sessions"

    session_sha256: str = Field(sa_column=Column(String(64), primary_key=True))
    person: str = Field(sa_column=Column(String(200), nullable=False))
    csrf_token: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = _when()
    expires_at: datetime = _when()


class ReceiptKeyRow(SQLModel, table=True):
    """An Ed25519 key that signs receipts. The newest one signs; every listed one verifies."""

    __tablename__ = "receipt_keys"

    key_id: str = Field(sa_column=Column(String(16), primary_key=True))
    private_key: str = Field(sa_column=Column(Text, nullable=False))
    public_key: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _when()


class WebhookSecretRow(SQLModel, table=True):
    """An agent's webhook signing secret; the previous one keeps signing for a grace period."""

    __tablename__ = "webhook_secrets"

    agent: str = Field(sa_column=Column(String(200), primary_key=True))
    secret: str = Field(sa_column=Column(Text, nullable=False))
    previous_secret: str | None = Field(default=None, sa_column=Column(Text))
    rotated_at: datetime = _when()


AGENT_KEYS = table_of(AgentKeyRow)
IDEMPOTENCY = table_of(IdempotencyRow)
LOGIN_TOKENS = table_of(LoginTokenRow)
WEB_SESSIONS = table_of(WebSessionRow)
RECEIPT_KEYS = table_of(ReceiptKeyRow)
WEBHOOK_SECRETS = table_of(WebhookSecretRow)


class LinkKeyRow(SQLModel, table=True):
    """The server secret that signed decision links (email Approve / Deny) are made with."""

    __tablename__ = "link_keys"

    key_id: str = Field(sa_column=Column(String(32), primary_key=True))
    secret: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _when()


class SpentLinkRow(SQLModel, table=True):
    """A decision link that has been used: its nonce, written with the vote it cast."""

    __tablename__ = "spent_links"

    nonce: str = Field(sa_column=Column(String(64), primary_key=True))
    request_id: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    spent_at: datetime = _when()


LINK_KEYS = table_of(LinkKeyRow)
SPENT_LINKS = table_of(SpentLinkRow)


class GrantRow(SQLModel, table=True):
    """A time-boxed grant (:mod:`approvals.grants`): the agent's later requests with the
    same action and matched params are approved at once until ``expires_at``."""

    __tablename__ = "grants"
    __table_args__ = (
        # The create path's lookup: this agent's grants for this action and these values.
        Index("ix_grants_lookup", "agent", "action", "match_key", "expires_at"),
        # The live grants, soonest to end first (status, the inbox, the CLI).
        Index("ix_grants_expires", "expires_at"),
    )

    id: str = Field(sa_column=Column(String(32), primary_key=True))
    policy_name: str = Field(sa_column=Column(String(200), nullable=False))
    action: str = Field(sa_column=Column(String(200), nullable=False))
    agent: str = Field(sa_column=Column(String(200), nullable=False))
    match_key: str = Field(sa_column=Column(String(64), nullable=False))
    # Plain JSON, like params: the matched values are agent params.
    match_paths: list[str] = Field(sa_column=Column(JSON, nullable=False))
    matched: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    given_by: list[str] = Field(sa_column=Column(JSON, nullable=False))
    given_at: datetime = _when()
    expires_at: datetime = _when()
    source_request_id: str = Field(sa_column=Column(String(64), nullable=False))
    revoked_at: datetime | None = _when(nullable=True)
    revoked_by: str | None = Field(default=None, sa_column=Column(String(200)))
    revoke_reason: str | None = Field(default=None, sa_column=Column(Text))


GRANTS = table_of(GrantRow)
