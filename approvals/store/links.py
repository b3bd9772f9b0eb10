"""The statements behind signed decision links: the signing secret and the spent nonces.

:mod:`approvals.links` decides what a link says and whether it is genuine, and the service
spends a link in the transaction that counts its vote; these functions only read and write
the rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select

from approvals.store.reads import SyncReads
from approvals.store.transaction import WriteTx
from approvals.tables import LINK_KEYS, SPENT_LINKS


def link_secret(reads: SyncReads, key_id: str) -> str | None:
    """The stored secret named ``key_id``, or ``None`` when there is none yet."""
    row = reads.conn.execute(select(LINK_KEYS.c.secret).where(LINK_KEYS.c.key_id == key_id)).first()
    return None if row is None else str(row.secret)


def add_link_secret(tx: WriteTx, *, key_id: str, secret: str, created_at: datetime) -> None:
    """Store the secret named ``key_id`` (base64url text)."""
    tx.conn.execute(insert(LINK_KEYS).values(key_id=key_id, secret=secret, created_at=created_at))


def link_is_spent(reads: SyncReads, nonce: str) -> bool:
    """Whether the link with this nonce has been used."""
    found = reads.conn.execute(select(SPENT_LINKS.c.nonce).where(SPENT_LINKS.c.nonce == nonce))
    return found.first() is not None


def spend_link(tx: WriteTx, *, nonce: str, request_id: str, at: datetime) -> None:
    """Record the link with this nonce as used (the primary key refuses a second use)."""
    tx.conn.execute(insert(SPENT_LINKS).values(nonce=nonce, request_id=request_id, spent_at=at))
