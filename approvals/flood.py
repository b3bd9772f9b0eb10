"""The flood guard: one agent cannot bury a channel (or a person's DMs) under cards.

At most :data:`CARDS_PER_MINUTE` cards from one agent go to one destination in any minute
(a sliding window over the cards queued there). Further requests for that destination are
not posted one by one: they are gathered into one digest card per agent and destination
("12 more requests from agent deploy-bot are waiting"), which is edited as the count
changes. The requests themselves stay pending, with their deadlines, reminders and
escalations, and are decided in the web inbox. Once the agent slows down, its cards are
posted one by one again; a later flood starts a new digest card.

How it is stored, without tables of its own:

- a gathered request has a delivery row at the destination whose ``ref`` is a digest marker
  ``{"digest": DIGEST_ID}`` instead of a platform message reference (there is no card of
  its own to edit or reply to);
- the digest card has a delivery row of its own under its digest id (``digest.`` and 128
  random bits, which no request id can be), holding the platform's message reference once
  it is posted;
- outbox rows of kind :data:`DIGEST` post or re-render the digest card. The dispatcher
  counts the gathered requests still pending when it delivers such a row, so one queued
  row is enough however many changes happened before it ran.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from approvals.card import Digest
from approvals.model import ApprovalRequest
from approvals.store import SyncReads, WriteTx, flood_queries

CARDS_PER_MINUTE = 20
"""Cards one agent may have posted to one destination in any minute before a digest."""
WINDOW = timedelta(minutes=1)
DIGEST = "digest"
"""Outbox row kind: post or re-render a digest card (``request_id`` is the digest id)."""
DIGEST_ID_PREFIX = "digest."
"""Request ids are URL-safe base64, which has no ``.``: a digest id is never a request id."""
_SEND = "send"  # approvals.service.SEND; not imported, the service imports this module


def new_digest_id() -> str:
    return DIGEST_ID_PREFIX + secrets.token_urlsafe(16)


def is_digest_id(request_id: str) -> bool:
    return request_id.startswith(DIGEST_ID_PREFIX)


def digest_of(ref: Mapping[str, Any] | None) -> str | None:
    """The digest id a delivery's ``ref`` marks it gathered into, or ``None`` for a card."""
    if ref is None:
        return None
    digest = ref.get("digest")
    return digest if isinstance(digest, str) and is_digest_id(digest) else None


def over_limit(tx: WriteTx, agent: str, destination: str, now: datetime) -> bool:
    """Whether ``agent`` already had :data:`CARDS_PER_MINUTE` cards queued for
    ``destination`` in the minute up to ``now``."""
    queued = flood_queries.messages_queued_since(
        tx, agent=agent, destination=destination, kind=_SEND, since=now - WINDOW
    )
    return queued >= CARDS_PER_MINUTE


def gather(tx: WriteTx, request: ApprovalRequest, destination: str, now: datetime) -> str:
    """Put ``request`` (whose delivery row at ``destination`` exists, unsent) into the
    agent's open digest there, opening one if there is none, and queue the digest's
    refresh. Returns the digest id."""
    # Two processes gathering for the same agent must agree on one open digest.
    tx.lock_agent(request.agent)
    pending = flood_queries.pending_deliveries_at(tx, request.agent, destination)
    open_digests = {digest for digest in (digest_of(row.ref) for row in pending) if digest}
    digest = min(open_digests) if open_digests else None
    if digest is None:
        digest = new_digest_id()
        tx.add_delivery(digest, destination, 0, now)
    tx.set_delivery_ref(request.id, destination, {"digest": digest}, now)
    refresh(tx, digest, destination, request.agent, now)
    return digest


def refresh(tx: WriteTx, digest: str, destination: str, agent: str, now: datetime) -> None:
    """Queue a re-render of a digest card, unless one is queued and not yet picked up
    (that one will count at delivery time, so it will show this change too)."""
    if not flood_queries.unclaimed_message_queued(tx, digest):
        tx.enqueue(
            request_id=digest,
            destination=destination,
            kind=DIGEST,
            at=now,
            payload={"agent": agent},
        )


def digest_state(reads: SyncReads, digest: str, destination: str, agent: str) -> Digest:
    """How the digest stands now (read when its card is rendered)."""
    pending = flood_queries.pending_deliveries_at(reads, agent, destination)
    rows = [row for row in pending if digest_of(row.ref) == digest]
    return Digest(
        digest_id=digest,
        agent=agent,
        waiting=tuple(row.request_id for row in rows),
        first_deadline=min((row.deadline for row in rows), default=None),
        cards_per_minute=CARDS_PER_MINUTE,
    )
