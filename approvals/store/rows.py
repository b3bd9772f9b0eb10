"""Turning domain values into table rows and back, and the small records the store returns."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row

from approvals.audit import AuditEntry, ChainBreak
from approvals.machine import Status
from approvals.model import ApprovalRequest, CastVote, Decision, Verdict
from approvals.policy import Policy


@dataclass(frozen=True)
class OutboxItem:
    """A claimed outbox row, handed to the dispatcher."""

    id: int
    destination: str
    kind: str
    request_id: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


@dataclass(frozen=True)
class DeliveryRecord:
    """A request's card at one destination; ``ref`` is ``None`` until it was sent."""

    request_id: str
    destination: str
    level: int
    ref: dict[str, Any] | None


@dataclass(frozen=True)
class AuditVerification:
    """The result of checking the whole audit chain."""

    checked: int
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def request_values(request: ApprovalRequest) -> dict[str, Any]:
    """Every column of a request's row."""
    return {
        "id": request.id,
        "agent": request.agent,
        "action": request.action,
        "title": request.title,
        "details": request.details,
        "params": request.params,
        "payload_sha256": request.payload_sha256,
        "requested_by": request.requested_by,
        "policy_name": request.policy.name,
        "policy_snapshot": request.policy.to_json(),
        "status": request.status.value,
        "level": request.level,
        "created_at": request.created_at,
        "deadline": request.deadline,
        "next_due_at": request.next_due_at,
        "next_remind_at": request.next_remind_at,
        "decided_at": request.decided_at,
        "decision": request.decision.to_json() if request.decision else None,
        "callback_url": request.callback_url,
        "version": request.version,
        "edited_params": request.edited_params,
        "edited_payload_sha256": request.edited_payload_sha256,
    }


def changed_request_values(before: ApprovalRequest, after: ApprovalRequest) -> dict[str, Any]:
    """The columns that differ between two versions of a request (``version`` always)."""
    old, new = mutable_values(before), mutable_values(after)
    changed = {name: value for name, value in new.items() if old[name] != value}
    changed["version"] = after.version
    return changed


def mutable_values(request: ApprovalRequest) -> dict[str, Any]:
    """The values of the columns a transition may change; the rest is fixed at creation."""
    return {
        "status": request.status.value,
        "level": request.level,
        "next_due_at": request.next_due_at,
        "next_remind_at": request.next_remind_at,
        "decided_at": request.decided_at,
        "decision": request.decision.to_json() if request.decision else None,
        "version": request.version,
        "edited_params": request.edited_params,
        "edited_payload_sha256": request.edited_payload_sha256,
    }


def vote_from_row(row: Row[Any]) -> CastVote:
    return CastVote(
        person=row.person,
        verdict=Verdict(row.verdict),
        platform=row.platform,
        identity=row.identity,
        reason=row.reason,
        cast_at=row.cast_at,
        payload_sha256=row.vote_payload_sha256,
        grant_for=None if row.grant_seconds is None else timedelta(seconds=row.grant_seconds),
    )


def request_from_row(row: Row[Any], votes: Sequence[CastVote]) -> ApprovalRequest:
    # A vote stored before edits existed was about the original payload.
    votes = [
        vote if vote.payload_sha256 else replace(vote, payload_sha256=row.payload_sha256)
        for vote in votes
    ]
    return ApprovalRequest(
        id=row.id,
        agent=row.agent,
        action=row.action,
        title=row.title,
        details=row.details,
        params=row.params,
        payload_sha256=row.payload_sha256,
        requested_by=row.requested_by,
        policy=policy_from_snapshot(row.policy_snapshot),
        status=Status(row.status),
        level=row.level,
        created_at=row.created_at,
        deadline=row.deadline,
        next_due_at=row.next_due_at,
        next_remind_at=row.next_remind_at,
        decided_at=row.decided_at,
        decision=Decision.from_json(row.decision) if row.decision else None,
        votes=tuple(votes),
        callback_url=row.callback_url,
        version=row.version,
        edited_params=row.edited_params,
        edited_payload_sha256=row.edited_payload_sha256,
    )


def policy_from_snapshot(snapshot: str | dict[str, Any]) -> Policy:
    """A request's policy from its stored snapshot: JSON text (parsed once per distinct
    text, since a snapshot is shared by every request made under the same policy) or an
    already parsed object."""
    if isinstance(snapshot, str):
        return _parsed_policy(snapshot)
    return Policy.from_json(snapshot)


@functools.lru_cache(maxsize=512)
def _parsed_policy(snapshot: str) -> Policy:
    return Policy.from_json(json.loads(snapshot))


def audit_from_row(row: Row[Any]) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        at=row.at,
        kind=row.kind,
        request_id=row.request_id,
        actor=row.actor,
        data=row.data,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def outbox_item_from_row(row: Row[Any]) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        destination=row.destination,
        kind=row.kind,
        request_id=row.request_id,
        payload=row.payload,
        attempts=row.attempts,
        created_at=row.created_at,
    )


def delivery_from_row(row: Row[Any]) -> DeliveryRecord:
    return DeliveryRecord(row.request_id, row.destination, row.level, row.ref)
