"""The statements of the flood guard (:mod:`approvals.flood`): how many cards an agent had
queued for a destination lately, which of its pending requests have a delivery row there,
and whether a digest card's refresh is already queued.

The flood guard decides the limit and what a digest is; these functions only read. They take
:class:`~approvals.store.reads.SyncReads`, so they run on a command's
:class:`~approvals.store.transaction.WriteTx` as well as in ``store.query``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, func, select

from approvals.machine import Status
from approvals.store.reads import SyncReads
from approvals.tables import DELIVERIES, OUTBOX, REQUESTS


class PendingDelivery(NamedTuple):
    """A pending request's delivery row at one destination."""

    request_id: str
    deadline: datetime
    ref: dict[str, Any] | None
    """The platform's message reference, or a digest marker, or ``None`` before sending."""


def messages_queued_since(
    reads: SyncReads, *, agent: str, destination: str, kind: str, since: datetime
) -> int:
    """How many outbox rows of ``kind`` for ``destination``, about ``agent``'s requests,
    were written after ``since``."""
    query = (
        select(func.count())
        .select_from(OUTBOX.join(REQUESTS, REQUESTS.c.id == OUTBOX.c.request_id))
        .where(
            OUTBOX.c.destination == destination,
            OUTBOX.c.created_at > since,
            OUTBOX.c.kind == kind,
            REQUESTS.c.agent == agent,
        )
    )
    return int(reads.conn.execute(query).scalar_one())


def pending_deliveries_at(reads: SyncReads, agent: str, destination: str) -> list[PendingDelivery]:
    """The delivery rows at ``destination`` of ``agent``'s pending requests, oldest request
    first.

    Bounded by the agent's pending requests (its ``max_open``), found by the
    (agent, status) index.
    """
    query = (
        select(REQUESTS.c.id, REQUESTS.c.deadline, DELIVERIES.c.ref)
        .select_from(
            REQUESTS.join(
                DELIVERIES,
                and_(
                    DELIVERIES.c.request_id == REQUESTS.c.id,
                    DELIVERIES.c.destination == destination,
                ),
            )
        )
        .where(REQUESTS.c.agent == agent, REQUESTS.c.status == Status.PENDING.value)
        .order_by(REQUESTS.c.created_at, REQUESTS.c.id)
    )
    return [PendingDelivery(*row) for row in reads.conn.execute(query)]


def unclaimed_message_queued(reads: SyncReads, request_id: str) -> bool:
    """Whether a pending outbox row for ``request_id`` waits that no dispatcher has leased."""
    queued = reads.conn.execute(
        select(OUTBOX.c.id).where(
            OUTBOX.c.request_id == request_id,
            OUTBOX.c.state == "pending",
            OUTBOX.c.lease_until.is_(None),
        )
    ).first()
    return queued is not None
