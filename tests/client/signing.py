"""Receipts and webhook deliveries made the way the wire spec says, for checking verifiers.

These build signed material from keys and secrets a test makes itself, independent of the
server's own signing code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from signoff_client.canonical import canonical_json, payload_sha256

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class SigningKey:
    """An Ed25519 key pair with its published id."""

    private: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public_bytes(self) -> bytes:
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.public_bytes).hexdigest()[:16]

    def entry(self, *, active: bool = True) -> dict[str, Any]:
        """This key as one entry of ``GET /v1/receipt-keys``."""
        return {
            "key_id": self.key_id,
            "alg": "Ed25519",
            "public_key": b64url(self.public_bytes),
            "created_at": "2026-01-01T00:00:00Z",
            "active": active,
        }

    def sign_receipt(self, body: dict[str, Any]) -> dict[str, Any]:
        signature = self.private.sign(canonical_json(body))
        return {
            "receipt": body,
            "key_id": self.key_id,
            "alg": "Ed25519",
            "signature": b64url(signature),
        }


def receipt_body(
    request_id: str,
    action: str,
    params: dict[str, Any],
    *,
    status: str = "approved",
    decided_at: datetime | None = None,
    deciders: list[str] | None = None,
) -> dict[str, Any]:
    decided = (decided_at or datetime.now(UTC)).replace(microsecond=0)
    return {
        "id": request_id,
        "payload_sha256": payload_sha256(action, params),
        "status": status,
        "deciders": ["alice"] if deciders is None else deciders,
        "decided_at": decided.strftime(TIME_FORMAT),
        "expires": (decided + timedelta(hours=1)).strftime(TIME_FORMAT),
    }


def signed_delivery(
    event: dict[str, Any], secret: str, timestamp: int
) -> tuple[bytes, dict[str, str]]:
    """A webhook body and its headers, signed with ``secret`` at ``timestamp``."""
    body = json.dumps(event).encode()
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "Signoff-Event-Id": event["event_id"],
        "Signoff-Timestamp": str(timestamp),
        "Signoff-Signature": f"v1={mac}",
    }
