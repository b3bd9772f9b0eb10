"""Signed decision links: an Approve or Deny link for one person, one request, one verdict.

Email has no buttons, so an email card carries links. A link is
``base64url(payload).base64url(HMAC-SHA256(key, payload))``; the payload names the
platform identity it was sent to, the request, the verdict, when it expires (never after
the request's deadline) and a random nonce. The key is derived, under a label of its own,
from the installation's server secret (:mod:`approvals.server_secret`), so every process of
one installation makes and checks the same links and nothing else signoff signs can pass
for one.

A link never decides by being opened: mail scanners and clients fetch every link in a
message. It opens a confirm page, and only that page's POST hands the vote to the core,
with the link's nonce and expiry (:class:`~approvals.model.LinkUse`): the core refuses an
expired or used link and spends the nonce in the transaction that counts the vote, so a
link decides at most once.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from approvals.clock import Clock
from approvals.model import LinkUse, Verdict
from approvals.receipts import b64url as _b64url
from approvals.receipts import b64url_decode as _b64url_decode
from approvals.server_secret import SERVER_SECRET_ID, ServerSecret
from approvals.store import SqlStore
from approvals.store import links as link_rows

LINK_SECRET_ID = SERVER_SECRET_ID
"""The name of the stored server secret decision links are signed with."""
_KEY_LABEL = b"signoff decision link v1"
"""Derives the HMAC key from the stored secret: a key used for nothing else."""
MAX_LINK_TOKEN_LENGTH = 1000
"""The longest token worth reading; anything longer is refused unread."""
_PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class LinkClaim:
    """What a genuine link says. Its signature has been checked; its expiry has not.

    Attributes:
        platform: the platform the link was sent on (``email``).
        identity: the platform identity it was sent to (an email address).
        request_id: the request it decides.
        verdict: Approve or Deny.
        expires_at: when it stops working (at the latest, the request's deadline).
        nonce: its single-use number.
    """

    platform: str
    identity: str
    request_id: str
    verdict: Verdict
    expires_at: datetime
    nonce: str

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    @property
    def use(self) -> LinkUse:
        """What the vote carries to the core."""
        return LinkUse(self.nonce, self.expires_at)


def sign_link(key: bytes, claim: LinkClaim) -> str:
    """The token of ``claim`` under ``key`` (the derived key)."""
    payload = json.dumps(
        {
            "v": _PAYLOAD_VERSION,
            "p": claim.platform,
            "i": claim.identity,
            "r": claim.request_id,
            "d": claim.verdict.value,
            "e": int(claim.expires_at.timestamp()),
            "n": claim.nonce,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode("utf-8")
    signature = hmac.new(key, payload, hashlib.sha256).digest()
    return f"{_b64url(payload)}.{_b64url(signature)}"


def read_link(key: bytes, token: str) -> LinkClaim | None:
    """The claim of a genuine token, or ``None`` for anything else (tampered, truncated,
    signed with another key, malformed). The signature is compared in constant time
    before the payload is parsed."""
    if len(token) > MAX_LINK_TOKEN_LENGTH or token.count(".") != 1:
        return None
    payload_text, signature_text = token.split(".")
    try:
        payload = _b64url_decode(payload_text)
        signature = _b64url_decode(signature_text)
    except (binascii.Error, ValueError):
        return None
    expected = hmac.new(key, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        return None
    try:
        body = json.loads(payload)
        if body.get("v") != _PAYLOAD_VERSION:
            return None
        return LinkClaim(
            platform=str(body["p"]),
            identity=str(body["i"]),
            request_id=str(body["r"]),
            verdict=Verdict(body["d"]),
            expires_at=datetime.fromtimestamp(int(body["e"]), UTC),
            nonce=str(body["n"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None  # signed by us, so never expected; refused all the same


class DecisionLinks:
    """Makes and reads signed decision links with the installation's server secret.

    The secret is made on first use and kept in the database (one per installation), so
    links keep working across restarts and in every process.
    """

    def __init__(self, store: SqlStore, clock: Clock, secret: ServerSecret | None = None) -> None:
        self._store = store
        self._clock = clock
        self._secret = secret or ServerSecret(store, clock)
        self._key: bytes | None = None

    async def _signing_key(self) -> bytes:
        if self._key is None:
            self._key = await self._secret.derive(_KEY_LABEL)
        return self._key

    def now(self) -> datetime:
        return self._clock.now()

    async def issue(
        self,
        *,
        platform: str,
        identity: str,
        request_id: str,
        verdict: Verdict,
        expires_at: datetime,
    ) -> str:
        """A new single-use link token."""
        claim = LinkClaim(
            platform=platform,
            identity=identity,
            request_id=request_id,
            verdict=verdict,
            expires_at=expires_at,
            nonce=secrets.token_urlsafe(16),
        )
        return sign_link(await self._signing_key(), claim)

    async def read(self, token: str) -> LinkClaim | None:
        """The claim of a genuine token (expired or not), or ``None``."""
        if len(token) > MAX_LINK_TOKEN_LENGTH:
            return None
        return read_link(await self._signing_key(), token)

    async def spent(self, nonce: str) -> bool:
        """Whether a link has been used (for what its page shows; the vote checks again)."""
        return await self._store.query(lambda reads: link_rows.link_is_spent(reads, nonce))
