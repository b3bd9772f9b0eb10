"""Credentials: agent API keys, webhook secrets, and web inbox sign-in links and sessions.

Presented secrets are never stored: only their SHA-256 (they are long random tokens, so a
plain hash is enough) and lookups compare digests in constant time. Webhook secrets are the
exception by necessity: the server signs with them, so it keeps them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from approvals.clock import Clock
from approvals.store import SqlStore, WriteTx, credentials

KEY_PREFIX = "so"
LOGIN_LINK_TTL = timedelta(minutes=15)
SESSION_TTL = timedelta(hours=12)
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - a marker, not a secret
MAX_CHECKED_KEYS = 10_000
"""Keys remembered as checked; past this many, the memory starts over (and keys are read)."""
WEBHOOK_ROTATION_GRACE = timedelta(hours=24)
"""After a rotation, webhooks are signed with both secrets this long, so receivers can switch."""


def _new_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AgentKey:
    """An API key's public part, for listing."""

    key_id: str
    agent: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class KeyHolder:
    """Whose an API key is: the agent, and the key's id (its public part)."""

    agent: str
    key_id: str


@dataclass(frozen=True)
class WebSession:
    """A signed-in web inbox user."""

    person: str
    csrf_token: str
    expires_at: datetime


class AccessStore:
    """Issues and checks credentials, on the same database as the requests."""

    def __init__(self, store: SqlStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._checked_keys: dict[str, KeyHolder] = {}
        """Keys this process has found live, by the SHA-256 of the whole presented key."""

    # -- agent API keys ---------------------------------------------------------------------

    async def create_agent_key(self, agent: str) -> str:
        """Make a key for ``agent``; the returned text is shown once and never stored."""
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        secret_sha256 = sha256_hex(secret)
        now = self._clock.now()
        await self._store.run(
            lambda tx: credentials.add_agent_key(
                tx, key_id=key_id, agent=agent, secret_sha256=secret_sha256, created_at=now
            )
        )
        return f"{KEY_PREFIX}_{key_id}_{secret}"

    async def agent_for_key(self, key: str) -> str | None:
        """The agent a presented key belongs to, or ``None`` (unknown, malformed, revoked)."""
        holder = await self.key_holder(key)
        return None if holder is None else holder.agent

    async def key_holder(self, key: str) -> KeyHolder | None:
        """Whose a presented key is, read now; ``None`` if unknown, malformed or revoked."""
        prefix, _, rest = key.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != KEY_PREFIX or not key_id or not secret or len(key) > 200:
            return None
        row = await self._store.query(lambda reads: reads.agent_key(key_id))
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.secret_sha256, sha256_hex(secret)):
            return None
        holder = KeyHolder(str(row.agent), key_id)
        if len(self._checked_keys) >= MAX_CHECKED_KEYS:
            self._checked_keys.clear()
        self._checked_keys[sha256_hex(key)] = holder
        return holder

    async def key_holder_to_confirm(self, key: str) -> KeyHolder | None:
        """Whose a presented key is, without a read when this process found the same key
        live before. Only for a command that confirms the key in its own transaction
        (``CreateCommand.agent_key_id``): the key may have been revoked since, by another
        process or the CLI, and then that command refuses (see :meth:`forget_key`)."""
        known = self._checked_keys.get(sha256_hex(key))
        if known is not None:
            return known
        return await self.key_holder(key)

    def forget_key(self, key_id: str) -> None:
        """A command found ``key_id`` revoked: read it again next time it is presented."""
        for digest in [d for d, holder in self._checked_keys.items() if holder.key_id == key_id]:
            del self._checked_keys[digest]

    async def list_agent_keys(self, agent: str | None = None) -> list[AgentKey]:
        rows = await self._store.query(lambda reads: credentials.agent_keys(reads, agent))
        return [AgentKey(r.key_id, r.agent, r.created_at, r.revoked_at) for r in rows]

    async def revoke_agent_keys(self, agent: str) -> int:
        """Revoke every live key of ``agent``; returns how many."""
        now = self._clock.now()
        revoked = await self._store.run(lambda tx: credentials.revoke_agent_keys(tx, agent, now))
        for digest in [d for d, holder in self._checked_keys.items() if holder.agent == agent]:
            del self._checked_keys[digest]
        return revoked

    # -- webhook secrets --------------------------------------------------------------------

    async def webhook_secret(self, agent: str) -> str:
        """The agent's webhook secret, made on first use."""
        known = await self._store.query(
            lambda reads: credentials.current_webhook_secret(reads, agent)
        )
        if known is not None:
            return known
        secret = _new_webhook_secret()
        now = self._clock.now()

        def make_secret(tx: WriteTx) -> str:
            tx.lock_agent(agent)
            found = credentials.current_webhook_secret(tx, agent)
            if found is not None:
                return found
            credentials.add_webhook_secret(tx, agent, secret, now)
            return secret

        return await self._store.run(make_secret)

    async def webhook_signing_secrets(self, agent: str) -> list[str]:
        """The secrets to sign the agent's webhooks with: the current one, and the previous one
        for a day after a rotation."""
        current = await self.webhook_secret(agent)
        row = await self._store.query(lambda reads: credentials.webhook_secrets_row(reads, agent))
        secrets_in_use = [current]
        if (
            row is not None
            and row.previous_secret
            and self._clock.now() - row.rotated_at < WEBHOOK_ROTATION_GRACE
        ):
            secrets_in_use.append(str(row.previous_secret))
        return secrets_in_use

    async def rotate_webhook_secret(self, agent: str) -> str:
        """A new secret for the agent; the old one still signs for ``WEBHOOK_ROTATION_GRACE``."""
        current = await self.webhook_secret(agent)
        secret = _new_webhook_secret()
        now = self._clock.now()
        await self._store.run(
            lambda tx: credentials.rotate_webhook_secret(
                tx, agent, secret=secret, previous=current, at=now
            )
        )
        return secret

    # -- web sign-in ------------------------------------------------------------------------

    async def create_login_token(self, person: str, ttl: timedelta = LOGIN_LINK_TTL) -> str:
        """A single-use sign-in token for ``person``, valid for ``ttl``."""
        token = secrets.token_urlsafe(32)
        token_sha256 = sha256_hex(token)
        now = self._clock.now()
        await self._store.run(
            lambda tx: credentials.add_login_token(
                tx, token_sha256=token_sha256, person=person, created_at=now, expires_at=now + ttl
            )
        )
        return token

    async def redeem_login_token(self, token: str) -> str | None:
        """Use a sign-in token once. Returns the person, or ``None`` if unknown/used/expired."""
        if not token or len(token) > 200:
            return None
        now = self._clock.now()
        digest = sha256_hex(token)
        return await self._store.run(lambda tx: credentials.use_login_token(tx, digest, now))

    async def create_session(self, person: str, ttl: timedelta = SESSION_TTL) -> str:
        """Open a web session; returns the cookie value."""
        token = secrets.token_urlsafe(32)
        session_sha256 = sha256_hex(token)
        csrf_token = secrets.token_urlsafe(24)
        now = self._clock.now()
        await self._store.run(
            lambda tx: credentials.add_web_session(
                tx,
                session_sha256=session_sha256,
                person=person,
                csrf_token=csrf_token,
                created_at=now,
                expires_at=now + ttl,
            )
        )
        return token

    async def session(self, token: str) -> WebSession | None:
        """The live session behind a cookie value, or ``None``."""
        if not token or len(token) > 200:
            return None
        digest = sha256_hex(token)
        row = await self._store.query(lambda reads: reads.web_session(digest))
        if row is None or row.expires_at <= self._clock.now():
            return None
        return WebSession(person=row.person, csrf_token=row.csrf_token, expires_at=row.expires_at)

    async def end_session(self, token: str) -> None:
        digest = sha256_hex(token)
        await self._store.run(lambda tx: credentials.end_web_session(tx, digest))
