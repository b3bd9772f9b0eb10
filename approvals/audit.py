"""The audit log's hash chain: how an entry is hashed, and how a chain is verified.

Each entry stores the hash of the one before it, so changing, removing or reordering any
entry breaks the chain at that entry. Storage lives in :mod:`approvals.store`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from signoff_client.canonical import canonical_json

GENESIS_HASH = "0" * 64


class AuditKind(StrEnum):
    """What an audit entry records."""

    CREATED = "created"
    REUSED = "reused"
    VOTED = "voted"
    DECIDED = "decided"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUSED = "refused"
    REMINDED = "reminded"
    ESCALATED = "escalated"
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery_failed"
    CONFIG_LOADED = "config_loaded"
    CONFIG_REJECTED = "config_rejected"
    CLOCK_STEPPED = "clock_stepped"
    GRANTED = "granted"
    GRANT_ENDED = "grant_ended"


@dataclass(frozen=True)
class AuditEntry:
    """One stored audit entry. ``data`` is canonical JSON text, hashed exactly as stored."""

    seq: int
    at: datetime
    kind: str
    request_id: str | None
    actor: str
    data: str
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """The export form (one JSON line per entry)."""
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "request_id": self.request_id,
            "actor": self.actor,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def entry_hash(
    *,
    seq: int,
    at: datetime,
    kind: str,
    request_id: str | None,
    actor: str,
    data: str,
    prev_hash: str,
) -> str:
    """SHA-256 over every field of the entry and the previous entry's hash."""
    material = canonical_json(
        {
            "seq": seq,
            "at": at.isoformat(),
            "kind": kind,
            "request_id": request_id,
            "actor": actor,
            "data": data,
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(material).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    """Where verification failed and why."""

    seq: int
    reason: str


def verify_chain(
    entries: Iterable[AuditEntry], *, start_seq: int = 1, prev_hash: str = GENESIS_HASH
) -> tuple[int, ChainBreak | None]:
    """Check entries in ``seq`` order, continuing a chain verified up to ``start_seq - 1``.

    Returns:
        How many entries verified, and the first break (``None`` when the chain holds).
    """
    expected_prev = prev_hash
    expected_seq = start_seq
    checked = 0
    for entry in entries:
        if entry.seq != expected_seq:
            return checked, ChainBreak(expected_seq, f"entry {expected_seq} is missing")
        if entry.prev_hash != expected_prev:
            return checked, ChainBreak(entry.seq, "does not link to the entry before it")
        recomputed = entry_hash(
            seq=entry.seq,
            at=entry.at,
            kind=entry.kind,
            request_id=entry.request_id,
            actor=entry.actor,
            data=entry.data,
            prev_hash=entry.prev_hash,
        )
        if recomputed != entry.hash:
            return checked, ChainBreak(entry.seq, "content does not match its hash")
        checked += 1
        expected_prev = entry.hash
        expected_seq += 1
    return checked, None
