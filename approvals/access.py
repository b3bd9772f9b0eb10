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

from sqlalchemy import delete, insert, select, update

from approvals.clock import Clock
from approvals.store import SqlStore, WriteTx
from approvals.tables import AGENT_KEYS, LOGIN_TOKENS, WEB_SESSIONS, WEBHOOK_SECRETS

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
        row = {
            "key_id": key_id,
            "agent": agent,
            "secret_sha256": sha256_hex(secret),
            "created_at": self._clock.now(),
            "revoked_at": None,
        }
        await self._store.run(lambda tx: tx.conn.execute(insert(AGENT_KEYS).values(**row)))
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
        query = select(AGENT_KEYS).order_by(AGENT_KEYS.c.agent, AGENT_KEYS.c.created_at)
        if agent is not None:
            query = query.where(AGENT_KEYS.c.agent == agent)
        async with self._store.read() as reader:
            rows = (await reader.conn.execute(query)).all()
        return [AgentKey(r.key_id, r.agent, r.created_at, r.revoked_at) for r in rows]

    async def revoke_agent_keys(self, agent: str) -> int:
        """Revoke every live key of ``agent``; returns how many."""
        revoke = (
            update(AGENT_KEYS)
            .where(AGENT_KEYS.c.agent == agent, AGENT_KEYS.c.revoked_at.is_(None))
            .values(revoked_at=self._clock.now())
        )
        revoked = await self._store.run(lambda tx: int(tx.conn.execute(revoke).rowcount))
        for digest in [d for d, holder in self._checked_keys.items() if holder.agent == agent]:
            del self._checked_keys[digest]
        return revoked

    # -- webhook secrets --------------------------------------------------------------------

    async def webhook_secret(self, agent: str) -> str:
        """The agent's webhook secret, made on first use."""
        async with self._store.read() as reader:
            row = (
                await reader.conn.execute(
                    select(WEBHOOK_SECRETS.c.secret).where(WEBHOOK_SECRETS.c.agent == agent)
                )
            ).first()
        if row is not None:
            return str(row.secret)
        secret = _new_webhook_secret()
        now = self._clock.now()

        def make_secret(tx: WriteTx) -> str:
            tx.lock_agent(agent)
            found = tx.conn.execute(
                select(WEBHOOK_SECRETS.c.secret).where(WEBHOOK_SECRETS.c.agent == agent)
            ).first()
            if found is not None:
                return str(found.secret)
            tx.conn.execute(
                insert(WEBHOOK_SECRETS).values(
                    agent=agent, secret=secret, previous_secret=None, rotated_at=now
                )
            )
            return secret

        return await self._store.run(make_secret)

    async def webhook_signing_secrets(self, agent: str) -> list[str]:
        """The secrets to sign the agent's webhooks with: the current one, and the previous one
        for a day after a rotation."""
        current = await self.webhook_secret(agent)
        async with self._store.read() as reader:
            row = (
                await reader.conn.execute(
                    select(WEBHOOK_SECRETS).where(WEBHOOK_SECRETS.c.agent == agent)
                )
            ).first()
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
        rotate = (
            update(WEBHOOK_SECRETS)
            .where(WEBHOOK_SECRETS.c.agent == agent)
            .values(secret=secret, previous_secret=current, rotated_at=self._clock.now())
        )
        await self._store.run(lambda tx: tx.conn.execute(rotate))
        return secret

    # -- web sign-in ------------------------------------------------------------------------

    async def create_login_token(self, person: str, ttl: timedelta = LOGIN_LINK_TTL) -> str:
        """A single-use sign-in token for ``person``, valid for ``ttl``."""
        token = secrets.token_urlsafe(32)
        now = self._clock.now()
        row = insert(LOGIN_TOKENS).values(
            token_sha256=sha256_hex(token),
            person=person,
            created_at=now,
            expires_at=now + ttl,
            used_at=None,
        )
        await self._store.run(lambda tx: tx.conn.execute(row))
        return token

    async def redeem_login_token(self, token: str) -> str | None:
        """Use a sign-in token once. Returns the person, or ``None`` if unknown/used/expired."""
        if not token or len(token) > 200:
            return None
        now = self._clock.now()
        digest = sha256_hex(token)

        def redeem(tx: WriteTx) -> str | None:
            result = tx.conn.execute(
                update(LOGIN_TOKENS)
                .where(
                    LOGIN_TOKENS.c.token_sha256 == digest,
                    LOGIN_TOKENS.c.used_at.is_(None),
                    LOGIN_TOKENS.c.expires_at > now,
                )
                .values(used_at=now)
            )
            if result.rowcount != 1:
                return None
            person = tx.conn.execute(
                select(LOGIN_TOKENS.c.person).where(LOGIN_TOKENS.c.token_sha256 == digest)
            ).scalar_one()
            return str(person)

        return await self._store.run(redeem)

    async def create_session(self, person: str, ttl: timedelta = SESSION_TTL) -> str:
        """Open a web session; returns the cookie value."""
        token = secrets.token_urlsafe(32)
        now = self._clock.now()
        row = insert(WEB_SESSIONS).values(
            session_sha256=sha256_hex(token),
            person=person,
            csrf_token=secrets.token_urlsafe(24),
            created_at=now,
            expires_at=now + ttl,
        )
        await self._store.run(lambda tx: tx.conn.execute(row))
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
        end = delete(WEB_SESSIONS).where(WEB_SESSIONS.c.session_sha256 == sha256_hex(token))
        await self._store.run(lambda tx: tx.conn.execute(end))
