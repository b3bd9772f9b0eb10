"""Checking what signoff signed: Ed25519 receipts and HMAC-signed webhook deliveries.

A receipt proves that one request, for one exact payload, reached a final state; an
executor checks it against the payload it is about to run (so an approval of one payload
never authorizes another). A webhook delivery proves it came from signoff (the agent's
webhook secret) and recently (the signed timestamp).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from signoff_client.canonical import CanonicalJsonError, canonical_json, payload_sha256
from signoff_client.errors import ReceiptError, WebhookError

RECEIPT_ALGORITHM = "Ed25519"
RECEIPT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
WEBHOOK_TOLERANCE_SECONDS = 300
SIGNATURE_HEADER = "signoff-signature"
TIMESTAMP_HEADER = "signoff-timestamp"
EVENT_ID_HEADER = "signoff-event-id"
SIGNATURE_VERSION = "v1="

ReceiptKeys = Mapping[str, Any] | Iterable[Mapping[str, Any]]
"""``GET /v1/receipt-keys`` JSON (``{"keys": [...]}``), a list of its entries, or a mapping
of key id to the raw 32-byte public key (or an ``Ed25519PublicKey``)."""


def key_id_for(public_key: bytes) -> str:
    """The id signoff gives a raw Ed25519 public key: 16 hex chars of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def b64url_decode(text: str) -> bytes:
    """Base64url without padding, strictly (``binascii.Error`` on anything else)."""
    if not isinstance(text, str) or "=" in text:
        raise binascii.Error("not unpadded base64url text")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_keys(keys: ReceiptKeys) -> dict[str, Ed25519PublicKey]:
    """Key id -> public key, from any of the forms ``verify_receipt`` accepts.

    Raises:
        ReceiptError: when an entry is malformed or its id is not its key's id.
    """
    if isinstance(keys, Mapping) and "keys" in keys:
        keys = keys["keys"]
    found: dict[str, Ed25519PublicKey] = {}
    if isinstance(keys, Mapping):
        for key_id, value in keys.items():
            found[str(key_id)] = _public_key(value)
        return found
    for entry in keys:
        if not isinstance(entry, Mapping):
            raise ReceiptError("a receipt key entry is not an object")
        if entry.get("alg", RECEIPT_ALGORITHM) != RECEIPT_ALGORITHM:
            continue  # a key for another algorithm can never verify an Ed25519 receipt
        try:
            raw = b64url_decode(entry["public_key"])
        except (KeyError, binascii.Error) as exc:
            raise ReceiptError("a receipt key entry has no valid public_key") from exc
        key_id = entry.get("key_id")
        if key_id != key_id_for(raw):
            raise ReceiptError(f"receipt key {key_id!r} is not the id of its public key")
        found[key_id] = _public_key(raw)
    return found


def _public_key(value: Any) -> Ed25519PublicKey:
    if isinstance(value, Ed25519PublicKey):
        return value
    try:
        return Ed25519PublicKey.from_public_bytes(bytes(value))
    except (TypeError, ValueError) as exc:
        raise ReceiptError("a receipt public key is not 32 raw Ed25519 bytes") from exc


def verify_receipt(
    receipt: Mapping[str, Any],
    action: str,
    params: Mapping[str, Any],
    keys: ReceiptKeys,
    *,
    request_id: str | None = None,
    now: datetime | None = None,
    require_status: str | None = "approved",
) -> dict[str, Any]:
    """Check a receipt against the payload about to be acted on; return its signed content.

    Args:
        receipt: the JSON of ``GET /v1/approvals/{id}/receipt`` (or a webhook's ``receipt``).
        action: the action about to be performed.
        params: the exact params about to be used; their hash with ``action`` must be the
            signed ``payload_sha256``.
        keys: the server's receipt keys (see ``ReceiptKeys``); old keys keep verifying
            until an admin removes them.
        request_id: when given, the receipt must be this request's.
        now: the time to judge expiry by (default: now).
        require_status: the status the receipt must carry; ``None`` accepts any.

    Returns:
        The signed receipt object: ``{id, payload_sha256, status, deciders, decided_at,
        expires}``.

    Raises:
        ReceiptError: naming the first thing that is wrong. Never act on such a receipt.
    """
    signed = receipt.get("receipt") if isinstance(receipt, Mapping) else None
    if not isinstance(signed, Mapping):
        raise ReceiptError("no signed receipt object")
    if receipt.get("alg") != RECEIPT_ALGORITHM:
        raise ReceiptError(f"algorithm {receipt.get('alg')!r} is not {RECEIPT_ALGORITHM}")
    key_id = receipt.get("key_id")
    key = public_keys(keys).get(key_id) if isinstance(key_id, str) else None
    if key is None:
        raise ReceiptError(f"signed with unknown key {key_id!r}", code="unknown_key")
    try:
        signature = b64url_decode(receipt["signature"])
        key.verify(signature, canonical_json(dict(signed)))
    except (KeyError, binascii.Error, CanonicalJsonError, InvalidSignature) as exc:
        raise ReceiptError("the signature does not verify", code="bad_signature") from exc

    # Signed, so the content below is what signoff said; now check it says the right thing.
    try:
        expected_hash = payload_sha256(action, dict(params))
    except CanonicalJsonError as exc:
        raise ReceiptError(f"the params have no JSON form: {exc}", code="payload_mismatch") from exc
    signed_hash = str(signed.get("payload_sha256", "")).encode()
    if not hmac.compare_digest(signed_hash, expected_hash.encode()):
        raise ReceiptError(
            "the approved payload is not this action with these params", code="payload_mismatch"
        )
    if request_id is not None and signed.get("id") != request_id:
        raise ReceiptError(
            f"the receipt is for request {signed.get('id')!r}, not {request_id!r}",
            code="wrong_request",
        )
    try:
        expires = datetime.strptime(str(signed["expires"]), RECEIPT_TIME_FORMAT).replace(tzinfo=UTC)
    except (KeyError, ValueError) as exc:
        raise ReceiptError("the receipt has no valid expiry time") from exc
    moment = now or datetime.now(UTC)
    if moment > expires:
        raise ReceiptError(f"the receipt expired at {signed['expires']}", code="expired")
    if require_status is not None and signed.get("status") != require_status:
        raise ReceiptError(
            f"the request was {signed.get('status')!r}, not {require_status!r}",
            code="wrong_status",
        )
    return dict(signed)


def webhook_signature(secret: str, timestamp: str | int, body: bytes) -> str:
    """The hex HMAC-SHA256 signoff sends as ``Signoff-Signature: v1=...``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance_seconds: float = WEBHOOK_TOLERANCE_SECONDS,
    now: datetime | float | None = None,
) -> dict[str, Any]:
    """Check a webhook delivery and return its event.

    Args:
        body: the request body exactly as received (bytes, before any JSON parsing).
        headers: the request headers (names in any case).
        secret: the agent's webhook secret (``whsec_...``).
        tolerance_seconds: how far the signed timestamp may be from ``now``; older
            deliveries are refused so a captured one cannot be replayed later.
        now: the time to judge freshness by (default: now).

    Returns:
        The event: ``{event_id, type, approval, receipt}``. ``event_id`` is the same on
        every retry of one delivery, so a receiver can drop duplicates by it.

    Raises:
        WebhookError: for a missing header, a stale or future timestamp, or a signature
            that does not match (a forgery, or another secret).
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER)
    signatures = lowered.get(SIGNATURE_HEADER)
    if not timestamp:
        raise WebhookError("no Signoff-Timestamp header")
    if not signatures:
        raise WebhookError("no Signoff-Signature header")
    try:
        sent_at = int(timestamp.strip())
    except ValueError as exc:
        raise WebhookError("the Signoff-Timestamp header is not a number") from exc
    if now is None:
        current = time.time()
    elif isinstance(now, datetime):
        current = now.timestamp()
    else:
        current = float(now)
    if abs(current - sent_at) > tolerance_seconds:
        raise WebhookError(
            f"the timestamp is {current - sent_at:+.0f} s off (more than {tolerance_seconds} s)"
        )
    expected = webhook_signature(secret, timestamp.strip(), body).encode()
    candidates = [
        part.strip()[len(SIGNATURE_VERSION) :].encode("utf-8", "replace")
        for part in signatures.split(",")
        if part.strip().startswith(SIGNATURE_VERSION)
    ]
    # Compare with every candidate, in constant time each (several during a secret rotation).
    if not any(hmac.compare_digest(candidate, expected) for candidate in candidates):
        raise WebhookError("the signature does not match")
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise WebhookError("the body is not JSON") from exc
    if not isinstance(event, dict):
        raise WebhookError("the body is not a JSON object")
    event_id_header = lowered.get(EVENT_ID_HEADER)
    if event_id_header is not None and event_id_header != event.get("event_id"):
        raise WebhookError("the Signoff-Event-Id header differs from the signed event id")
    return event
