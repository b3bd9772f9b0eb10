"""The installation's server secret, and the keys derived from it under labels of their own.

One random secret per installation is kept in the database, made on first use, so every
process of one installation derives the same keys and they survive restarts. Each use
(signed email decision links, approval confirmations...) derives its own key from it with a
label of its own, so nothing one signs can pass for another's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from approvals.clock import Clock
from approvals.receipts import b64url, b64url_decode
from approvals.store import SqlStore, WriteTx
from approvals.store import links as link_rows

SERVER_SECRET_ID = "decision-links"  # noqa: S105 - the name of a stored secret, not one
"""The name the secret is stored under (it was first made for decision links)."""
_CREATION_LOCK = "decision-links-secret"


class ServerSecret:
    """Loads (or makes, once per installation) the stored secret and derives keys from it."""

    def __init__(self, store: SqlStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._secret: bytes | None = None

    async def _load(self) -> bytes:
        if self._secret is None:
            stored = await self._store.query(
                lambda reads: link_rows.link_secret(reads, SERVER_SECRET_ID)
            )
            if stored is None:
                fresh = b64url(secrets.token_bytes(32))
                at = self._clock.now()

                def first_secret(tx: WriteTx) -> str:
                    # Processes starting together must not each make the secret.
                    tx.lock_agent(_CREATION_LOCK)
                    found = link_rows.link_secret(tx, SERVER_SECRET_ID)
                    if found is None:
                        link_rows.add_link_secret(
                            tx, key_id=SERVER_SECRET_ID, secret=fresh, created_at=at
                        )
                        return fresh
                    return found

                stored = await self._store.run(first_secret)
            self._secret = b64url_decode(stored)
        return self._secret

    async def derive(self, label: bytes) -> bytes:
        """The HMAC-SHA256 key for one use, named by ``label``."""
        return derive_key(await self._load(), label)


def derive_key(secret: bytes, label: bytes) -> bytes:
    """The key ``label`` names under ``secret``."""
    return hmac.new(secret, label, hashlib.sha256).digest()
