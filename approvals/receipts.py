"""Signed receipts: proof that a request reached its final state, bound to its exact payload.

A receipt covers ``{id, payload_sha256, status, deciders, decided_at, expires}`` and is signed
with Ed25519 over the canonical JSON of that object. When approvers changed the params before
approving, ``payload_sha256`` is the hash of the edited payload and the receipt adds
``edited: true`` and ``original_payload_sha256``. When a time-boxed grant approved the
request at once, the receipt adds ``grant: {id, given_by, given_at, until}`` and its
``deciders`` are the grant's givers. An executor checks it (with
``signoff_client.verify_receipt``) against the payload it is about to run, so an approval of
one payload never authorizes another.

Signing keys live in the database, so every process sharing it signs with the same key and
serves the same public keys. The newest key signs; older keys stay published (and keep
verifying) until an admin removes them, which is how keys are rotated without breaking
receipts already handed out.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from approvals.clock import Clock
from approvals.machine import Status
from approvals.model import SYSTEM_PLATFORM, ApprovalRequest
from approvals.store import SqlStore, WriteTx, credentials
from signoff_client.canonical import canonical_json

RECEIPT_TTL = timedelta(hours=1)
"""How long after the decision a receipt authorizes anything: run promptly, or ask again."""
ALGORITHM = "Ed25519"
_KEY_CREATION_LOCK = "signoff:receipt-keys"


def b64url(data: bytes) -> str:
    """Base64url without padding, the form keys and signatures travel in."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def receipt_time(moment: datetime) -> str:
    """UTC, second precision, ``Z`` suffix: one spelling, so signatures are reproducible."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_id_for(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class ReceiptKey:
    """A published verification key."""

    key_id: str
    public_key: bytes
    created_at: datetime
    active: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "alg": ALGORITHM,
            "public_key": b64url(self.public_key),
            "created_at": receipt_time(self.created_at),
            "active": self.active,
        }


class ReceiptNotFinal(Exception):
    """A pending request has no receipt yet."""


def receipt_deciders(request: ApprovalRequest) -> list[str]:
    """The people whose votes decided the request; nobody for timeouts, cancels and policies.
    For a request a time-boxed grant approved: the people who gave the grant."""
    decision = request.decision
    if decision is not None and decision.by_grant and decision.grant is not None:
        return list(decision.grant.given_by)
    if decision is None or decision.platform == SYSTEM_PLATFORM:
        return []
    if request.status is Status.APPROVED:
        return sorted(request.approvals())
    if request.status is Status.DENIED:
        return [decision.by]
    return []


def receipt_body(request: ApprovalRequest) -> dict[str, Any]:
    """The signed part of a final request's receipt."""
    if not request.status.is_final or request.decided_at is None:
        raise ReceiptNotFinal(f"request {request.id} is {request.status.value}; no receipt yet")
    body: dict[str, Any] = {
        "id": request.id,
        "payload_sha256": request.payload_sha256,
        "status": request.status.value,
        "deciders": receipt_deciders(request),
        "decided_at": receipt_time(request.decided_at),
        "expires": receipt_time(request.decided_at + RECEIPT_TTL),
    }
    if request.status is Status.APPROVED and request.edited_payload_sha256 is not None:
        # Approved with edits: the receipt binds the edited payload, so only the edited
        # params verify; it says so, and which payload the agent originally asked for.
        body.update(
            payload_sha256=request.edited_payload_sha256,
            edited=True,
            original_payload_sha256=request.payload_sha256,
        )
    decision = request.decision
    if decision is not None and decision.by_grant and decision.grant is not None:
        # Approved at once by a time-boxed grant: whose, given when, lasting until when.
        grant = decision.grant
        body["grant"] = {
            "id": grant.id,
            "given_by": list(grant.given_by),
            "given_at": receipt_time(grant.given_at),
            "until": receipt_time(grant.until),
        }
    if request.confirmed:
        body["confirmed"] = True
    return body


class ReceiptSigner:
    """Signs receipts with the newest key and manages the key set."""

    def __init__(self, store: SqlStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._private: dict[str, Ed25519PrivateKey] = {}

    async def sign(self, request: ApprovalRequest) -> dict[str, Any]:
        """The signed receipt of a final request (``ReceiptNotFinal`` while it is pending)."""
        body = receipt_body(request)
        key_id, private_key = await self._signing_key()
        signature = private_key.sign(canonical_json(body))
        return {"receipt": body, "key_id": key_id, "alg": ALGORITHM, "signature": b64url(signature)}

    async def keys(self) -> list[ReceiptKey]:
        """Every published key, newest (the signing one) first; makes the first if none."""
        keys = await self._list()
        if not keys:
            await self._signing_key()
            keys = await self._list()
        return keys

    async def rotate(self) -> ReceiptKey:
        """Add a new signing key; the old ones keep verifying until removed."""

        def add_key(tx: WriteTx) -> str:
            tx.lock_agent(_KEY_CREATION_LOCK)
            return self._insert_key(tx)

        key_id = await self._store.run(add_key)
        return next(key for key in await self._list() if key.key_id == key_id)

    async def remove(self, key_id: str) -> bool:
        """Stop publishing a key: receipts it signed no longer verify. True if it existed."""
        removed = await self._store.run(lambda tx: credentials.remove_receipt_key(tx, key_id))
        self._private.pop(key_id, None)
        return bool(removed)

    async def _list(self) -> list[ReceiptKey]:
        rows = await self._store.query(credentials.receipt_keys)
        return [
            ReceiptKey(row.key_id, b64url_decode(row.public_key), row.created_at, index == 0)
            for index, row in enumerate(rows)
        ]

    async def _signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        row = await self._store.query(credentials.newest_receipt_key)
        if row is None:

            def first_key(tx: WriteTx) -> Any:
                # Processes starting together must not each make a "first" key.
                tx.lock_agent(_KEY_CREATION_LOCK)
                if credentials.newest_receipt_key(tx) is None:
                    self._insert_key(tx)
                return credentials.newest_receipt_key(tx)

            row = await self._store.run(first_key)
        assert row is not None
        key_id = str(row.key_id)
        if key_id not in self._private:
            self._private[key_id] = Ed25519PrivateKey.from_private_bytes(
                b64url_decode(row.private_key)
            )
        return key_id, self._private[key_id]

    def _insert_key(self, tx: WriteTx) -> str:
        private_key = Ed25519PrivateKey.generate()
        public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        private = private_key.private_bytes_raw()
        key_id = key_id_for(public)
        credentials.add_receipt_key(
            tx,
            key_id=key_id,
            private_key=b64url(private),
            public_key=b64url(public),
            created_at=self._clock.now(),
        )
        return key_id
