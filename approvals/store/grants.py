"""The statements behind time-boxed grants: store one, find the live one, list, end.

:mod:`approvals.grants` says what a grant is and when it holds; the service gives, uses and
ends grants in its own transactions. These functions only read and write the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, update

from approvals.grants import Grant
from approvals.store.reads import SyncReads
from approvals.store.transaction import WriteTx
from approvals.tables import GRANTS

_LIVE_FOR = (
    select(GRANTS)
    .where(
        GRANTS.c.agent == bindparam("agent"),
        GRANTS.c.action == bindparam("action"),
        GRANTS.c.match_key == bindparam("match_key"),
        # Live means strictly before the bound: at expires_at the grant is over.
        GRANTS.c.expires_at > bindparam("now"),
        GRANTS.c.revoked_at.is_(None),
    )
    .order_by(GRANTS.c.expires_at.desc(), GRANTS.c.id)
)
_LIVE = (
    select(GRANTS)
    .where(GRANTS.c.expires_at > bindparam("now"), GRANTS.c.revoked_at.is_(None))
    .order_by(GRANTS.c.expires_at, GRANTS.c.id)
)
_ONE = select(GRANTS).where(GRANTS.c.id == bindparam("grant_id"))
_END = (
    update(GRANTS)
    .where(GRANTS.c.id == bindparam("grant_id"), GRANTS.c.revoked_at.is_(None))
    .values(
        revoked_at=bindparam("at"), revoked_by=bindparam("by"), revoke_reason=bindparam("reason")
    )
)


def grant_from_row(row: Row[Any]) -> Grant:
    return Grant(
        id=row.id,
        policy=row.policy_name,
        agent=row.agent,
        action=row.action,
        match_key=row.match_key,
        match_paths=tuple(row.match_paths),
        matched=row.matched,
        given_by=tuple(row.given_by),
        given_at=row.given_at,
        expires_at=row.expires_at,
        source_request_id=row.source_request_id,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        revoke_reason=row.revoke_reason,
    )


def add_grant(tx: WriteTx, grant: Grant) -> None:
    """Store a new grant."""
    tx.conn.execute(
        insert(GRANTS).values(
            id=grant.id,
            policy_name=grant.policy,
            action=grant.action,
            agent=grant.agent,
            match_key=grant.match_key,
            match_paths=list(grant.match_paths),
            matched=grant.matched,
            given_by=list(grant.given_by),
            given_at=grant.given_at,
            expires_at=grant.expires_at,
            source_request_id=grant.source_request_id,
        )
    )


def live_grants_for(
    reads: SyncReads, agent: str, action: str, match_key: str, now: datetime
) -> list[Grant]:
    """The agent's live grants for this action and matched values, longest-lasting first
    (the lookup index holds every column the filter reads)."""
    rows = reads.conn.execute(
        _LIVE_FOR, {"agent": agent, "action": action, "match_key": match_key, "now": now}
    )
    return [grant_from_row(row) for row in rows]


def live_grants(reads: SyncReads, now: datetime) -> list[Grant]:
    """Every grant live at ``now``, soonest to end first."""
    return [grant_from_row(row) for row in reads.conn.execute(_LIVE, {"now": now})]


def grant(reads: SyncReads, grant_id: str) -> Grant | None:
    """The grant with this id, live or not, or ``None``."""
    row = reads.conn.execute(_ONE, {"grant_id": grant_id}).first()
    return None if row is None else grant_from_row(row)


def end_grants(
    tx: WriteTx, grant_ids: Sequence[str], *, at: datetime, by: str, reason: str | None
) -> None:
    """Mark grants as ended at ``at`` (those already ended keep their first end)."""
    if grant_ids:
        tx.conn.execute(
            _END,
            [{"grant_id": gid, "at": at, "by": by, "reason": reason} for gid in grant_ids],
        )
