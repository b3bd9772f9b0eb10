"""The statements behind credentials: agent API keys, webhook secrets, web inbox sign-in
tokens and sessions, and the receipt signing keys.

:mod:`approvals.access` and :mod:`approvals.receipts` decide what a credential is and when it
is valid; these functions only read and write its rows. Writers take a
:class:`~approvals.store.transaction.WriteTx` (run them inside a command handed to
``store.run``); readers take :class:`~approvals.store.reads.SyncReads` (hand them to
``store.query``, or call them on a command's transaction).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Executable, Row, delete, insert, select, update

from approvals.store.reads import SyncReads
from approvals.store.transaction import WriteTx
from approvals.tables import AGENT_KEYS, LOGIN_TOKENS, RECEIPT_KEYS, WEB_SESSIONS, WEBHOOK_SECRETS

# -- agent API keys ---------------------------------------------------------------------------


def add_agent_key(
    tx: WriteTx, *, key_id: str, agent: str, secret_sha256: str, created_at: datetime
) -> None:
    """Store a new live key of ``agent`` (only the hash of its secret)."""
    tx.conn.execute(
        insert(AGENT_KEYS).values(
            key_id=key_id,
            agent=agent,
            secret_sha256=secret_sha256,
            created_at=created_at,
            revoked_at=None,
        )
    )


def agent_keys(reads: SyncReads, agent: str | None = None) -> list[Row[Any]]:
    """Every key's row (of one agent, if given), by agent and then age, revoked ones too."""
    query = select(AGENT_KEYS).order_by(AGENT_KEYS.c.agent, AGENT_KEYS.c.created_at)
    if agent is not None:
        query = query.where(AGENT_KEYS.c.agent == agent)
    return list(reads.conn.execute(query).all())


def revoke_agent_keys(tx: WriteTx, agent: str, at: datetime) -> int:
    """Mark every live key of ``agent`` revoked ``at``; returns how many were live."""
    revoke = (
        update(AGENT_KEYS)
        .where(AGENT_KEYS.c.agent == agent, AGENT_KEYS.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return int(tx.conn.execute(revoke).rowcount)


# -- webhook secrets --------------------------------------------------------------------------


def current_webhook_secret(reads: SyncReads, agent: str) -> str | None:
    """The secret ``agent``'s webhooks are signed with now, if it has one yet."""
    row = reads.conn.execute(
        select(WEBHOOK_SECRETS.c.secret).where(WEBHOOK_SECRETS.c.agent == agent)
    ).first()
    return None if row is None else str(row.secret)


def webhook_secrets_row(reads: SyncReads, agent: str) -> Row[Any] | None:
    """``agent``'s webhook secrets row: the secret, the previous one and when it rotated."""
    return reads.conn.execute(
        select(WEBHOOK_SECRETS).where(WEBHOOK_SECRETS.c.agent == agent)
    ).first()


def add_webhook_secret(tx: WriteTx, agent: str, secret: str, at: datetime) -> None:
    """Store ``agent``'s first webhook secret (no previous one)."""
    tx.conn.execute(
        insert(WEBHOOK_SECRETS).values(
            agent=agent, secret=secret, previous_secret=None, rotated_at=at
        )
    )


def rotate_webhook_secret(
    tx: WriteTx, agent: str, *, secret: str, previous: str, at: datetime
) -> None:
    """Make ``secret`` ``agent``'s webhook secret, keeping ``previous`` as the one before."""
    tx.conn.execute(
        update(WEBHOOK_SECRETS)
        .where(WEBHOOK_SECRETS.c.agent == agent)
        .values(secret=secret, previous_secret=previous, rotated_at=at)
    )


# -- web inbox sign-in tokens and sessions ----------------------------------------------------


def add_login_token(
    tx: WriteTx, *, token_sha256: str, person: str, created_at: datetime, expires_at: datetime
) -> None:
    """Store an unused sign-in token of ``person`` (only its hash)."""
    tx.conn.execute(
        insert(LOGIN_TOKENS).values(
            token_sha256=token_sha256,
            person=person,
            created_at=created_at,
            expires_at=expires_at,
            used_at=None,
        )
    )


def use_login_token(tx: WriteTx, token_sha256: str, now: datetime) -> str | None:
    """Mark the token with this hash used ``now`` if it is unused and unexpired, and return
    its person; ``None`` (and no change) otherwise."""
    result = tx.conn.execute(
        update(LOGIN_TOKENS)
        .where(
            LOGIN_TOKENS.c.token_sha256 == token_sha256,
            LOGIN_TOKENS.c.used_at.is_(None),
            LOGIN_TOKENS.c.expires_at > now,
        )
        .values(used_at=now)
    )
    if result.rowcount != 1:
        return None
    person = tx.conn.execute(
        select(LOGIN_TOKENS.c.person).where(LOGIN_TOKENS.c.token_sha256 == token_sha256)
    ).scalar_one()
    return str(person)


def add_web_session(
    tx: WriteTx,
    *,
    session_sha256: str,
    person: str,
    csrf_token: str,
    created_at: datetime,
    expires_at: datetime,
) -> None:
    """Store a web inbox session (only the hash of its cookie)."""
    tx.conn.execute(
        insert(WEB_SESSIONS).values(
            session_sha256=session_sha256,
            person=person,
            csrf_token=csrf_token,
            created_at=created_at,
            expires_at=expires_at,
        )
    )


def end_web_session(tx: WriteTx, session_sha256: str) -> None:
    """Delete the session whose cookie has this hash (nothing if there is none)."""
    tx.conn.execute(delete(WEB_SESSIONS).where(WEB_SESSIONS.c.session_sha256 == session_sha256))


# -- receipt signing keys ---------------------------------------------------------------------

_NEWEST_RECEIPT_KEY: Executable = (
    select(RECEIPT_KEYS.c.key_id, RECEIPT_KEYS.c.private_key)
    .order_by(RECEIPT_KEYS.c.created_at.desc(), RECEIPT_KEYS.c.key_id)
    .limit(1)
)


def add_receipt_key(
    tx: WriteTx, *, key_id: str, private_key: str, public_key: str, created_at: datetime
) -> None:
    """Store a signing key pair (base64url text); the newest one signs."""
    tx.conn.execute(
        insert(RECEIPT_KEYS).values(
            key_id=key_id, private_key=private_key, public_key=public_key, created_at=created_at
        )
    )


def remove_receipt_key(tx: WriteTx, key_id: str) -> int:
    """Delete a signing key; returns how many rows went (0 or 1)."""
    return int(
        tx.conn.execute(delete(RECEIPT_KEYS).where(RECEIPT_KEYS.c.key_id == key_id)).rowcount
    )


def receipt_keys(reads: SyncReads) -> list[Row[Any]]:
    """Every signing key's row, newest (the signing one) first."""
    query = select(RECEIPT_KEYS).order_by(RECEIPT_KEYS.c.created_at.desc(), RECEIPT_KEYS.c.key_id)
    return list(reads.conn.execute(query).all())


def newest_receipt_key(reads: SyncReads) -> Row[Any] | None:
    """(key_id, private_key) of the signing key, or ``None`` when there is no key yet."""
    return reads.conn.execute(_NEWEST_RECEIPT_KEY).first()
