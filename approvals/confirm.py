"""Confirmation tokens: the second, explicit step an approval under a ``confirm`` policy needs.

Under a policy with ``confirm: true`` (the default for ``risk: critical``) a first Approve
counts nothing: the person is shown a confirmation (the describe line, the risk and the
params, see :class:`~approvals.clicks.ConfirmPrompt`) that carries a token, and only an
approval carrying a genuine token counts. The token is stateless, so it keeps working in
every process and after a restart, and compact enough for a Telegram button (64 bytes of
``callback_data`` in all):

    ``<expiry, unix seconds in base 36>.<base64url of a truncated HMAC-SHA256>``

The HMAC binds the request, the platform identity the confirmation was shown to
(``platform:identity``), the payload hash being approved (the original or an edit) and
the expiry (a few minutes, never after the request's deadline). Its key is derived under a
label of its own from the installation's server secret (:mod:`approvals.server_secret`).
A token proves only that this person was shown this payload's confirmation: the vote it
comes with is judged like any other.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta

from approvals.receipts import b64url, b64url_decode
from approvals.server_secret import ServerSecret

CONFIRM_TTL = timedelta(minutes=5)
"""How long a confirmation stays usable (at most until the request's deadline)."""
MAX_CONFIRM_TOKEN_LENGTH = 40
"""The longest token worth reading; anything longer is refused unread."""
_KEY_LABEL = b"signoff approval confirmation v1"
_MAC_BYTES = 12
_EXPIRY = re.compile(r"[0-9a-z]{1,12}")
"""96 bits of HMAC: unguessable, and short enough for a Telegram button."""


def _mac(key: bytes, request_id: str, actor: str, payload_sha256: str, expires: int) -> bytes:
    message = "\n".join((request_id, actor, payload_sha256, str(expires))).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES]


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
        if number == 0:
            return text


def sign_confirmation(
    key: bytes, *, request_id: str, actor: str, payload_sha256: str, expires_at: datetime
) -> str:
    """The token confirming that ``actor`` approves ``payload_sha256`` for ``request_id``."""
    expires = int(expires_at.timestamp())
    mac = _mac(key, request_id, actor, payload_sha256, expires)
    return f"{_base36(expires)}.{b64url(mac)}"


def confirmation_is_valid(
    key: bytes,
    token: str | None,
    *,
    request_id: str,
    actor: str,
    payload_sha256: str,
    now: datetime,
) -> bool:
    """Whether ``token`` is a genuine, unexpired confirmation of exactly this approval.
    The HMAC is compared in constant time; anything malformed is simply not valid."""
    if not token or len(token) > MAX_CONFIRM_TOKEN_LENGTH or token.count(".") != 1:
        return False
    expiry_text, mac_text = token.split(".")
    if not _EXPIRY.fullmatch(expiry_text):
        return False
    try:
        expires = int(expiry_text, 36)
        mac = b64url_decode(mac_text)
    except (ValueError, binascii.Error):
        return False
    expected = _mac(key, request_id, actor, payload_sha256, expires)
    if not hmac.compare_digest(mac, expected):
        return False
    return now < datetime.fromtimestamp(expires, UTC)


def confirmation_expiry(now: datetime, deadline: datetime) -> datetime:
    """When a confirmation shown ``now`` stops working: soon, and never after the deadline."""
    return min(now + CONFIRM_TTL, deadline)


class ConfirmationKey:
    """The confirmation key of this installation, loaded once from the server secret."""

    def __init__(self, secret: ServerSecret) -> None:
        self._secret = secret
        self._key: bytes | None = None

    async def get(self) -> bytes:
        if self._key is None:
            self._key = await self._secret.derive(_KEY_LABEL)
        return self._key
