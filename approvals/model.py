"""The approval request and the values that travel with it (votes, decisions, commands)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from approvals.grants import GrantRef
from approvals.machine import Status
from approvals.policy import Policy
from signoff_client.canonical import canonical_json

SYSTEM_PLATFORM = "system"
"""Platform name recorded for decisions nobody clicked: policy auto-decisions and timeouts."""
GRANT_PLATFORM = "grant"
"""Platform name recorded for approvals a time-boxed grant made (:mod:`approvals.grants`)."""
MAX_REASON_LENGTH = 2000
"""The longest reason a person may give with a vote, in characters."""


def new_request_id() -> str:
    """A fresh request id: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


class Verdict(StrEnum):
    """What one approver says."""

    APPROVE = "approve"
    DENY = "deny"


@dataclass(frozen=True)
class CastVote:
    """A vote that counted: one per person per request."""

    person: str
    verdict: Verdict
    platform: str
    identity: str
    reason: str | None
    cast_at: datetime
    payload_sha256: str | None = None
    """The hash of the payload the person saw and voted on: the original, or an approver's
    edit of it. ``None`` only before it is read back from a stored request (votes stored
    before edits existed were all about the original)."""
    grant_for: timedelta | None = None
    """An approval *for a while* ("Approve for 1 h"): how long a grant the person asked
    to give (:mod:`approvals.grants`); ``None`` for a plain vote."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "person": self.person,
            "verdict": self.verdict.value,
            "platform": self.platform,
            "reason": self.reason,
            "cast_at": self.cast_at.isoformat(),
            "payload_sha256": self.payload_sha256,
        }
        if self.grant_for is not None:
            data["grant_seconds"] = int(self.grant_for.total_seconds())
        return data


@dataclass(frozen=True)
class Decision:
    """How a request became final.

    Attributes:
        verdict: the final status.
        by: the deciding person, ``policy:<name>`` for an auto decision, ``timeout`` when
            the deadline decided, or the agent's name when it cancelled.
        platform: where the decision was made (``slack``, ``web``, ``api``, ``system``...).
        reason: the reason given, if any.
        grant: the time-boxed grant that approved the request at once (``by`` is then
            ``grant:<id>`` and ``platform`` is ``grant``), or the grant an approval gave.
    """

    verdict: Status
    by: str
    platform: str
    reason: str | None = None
    grant: GrantRef | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "verdict": self.verdict.value,
            "by": self.by,
            "platform": self.platform,
            "reason": self.reason,
        }
        if self.grant is not None:
            data["grant"] = self.grant.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        grant = data.get("grant")
        return cls(
            verdict=Status(data["verdict"]),
            by=data["by"],
            platform=data["platform"],
            reason=data.get("reason"),
            grant=GrantRef.from_json(grant) if grant else None,
        )

    @property
    def by_grant(self) -> bool:
        """Whether a grant approved the request at once (nobody was asked)."""
        return self.grant is not None and self.platform == GRANT_PLATFORM


@dataclass(frozen=True)
class ApprovalRequest:
    """One request for approval, as stored. Immutable; changes produce a new version.

    ``deadline`` is the final deadline; ``next_due_at`` is the next moment the sweeper must
    look at the request (a reminder, an escalation, or the deadline itself).
    """

    id: str
    agent: str
    action: str
    title: str
    details: str
    params: dict[str, Any]
    payload_sha256: str
    requested_by: str | None
    policy: Policy
    status: Status
    level: int
    created_at: datetime
    deadline: datetime
    next_due_at: datetime | None
    next_remind_at: datetime | None
    decided_at: datetime | None = None
    decision: Decision | None = None
    votes: tuple[CastVote, ...] = ()
    callback_url: str | None = None
    version: int = 1
    edited_params: dict[str, Any] | None = None
    edited_payload_sha256: str | None = None
    """An approver's edit of ``params`` and its hash: while pending, the proposal the
    other approvers are asked to approve; once approved, what was approved (and what the
    receipt binds). ``None`` while nobody has edited."""

    @property
    def policy_name(self) -> str:
        return self.policy.name

    @property
    def proposal_params(self) -> dict[str, Any]:
        """The params an approval counts for now: the latest edit, else the original."""
        return self.edited_params if self.edited_params is not None else self.params

    @property
    def proposal_sha256(self) -> str:
        """The hash of :attr:`proposal_params` (with the action)."""
        return self.edited_payload_sha256 or self.payload_sha256

    @property
    def confirmed(self) -> bool:
        """Whether people approved this request under a policy that needs approvals
        confirmed: then every approval that counted carried a genuine confirmation (the
        vote path refuses any other), which its audit and its receipt record."""
        return (
            self.status is Status.APPROVED
            and self.decision is not None
            and self.decision.platform != SYSTEM_PLATFORM
            and not self.decision.by_grant
            and self.policy.needs_confirmation
        )

    def approvals(self) -> frozenset[str]:
        """Distinct persons who approved the current proposal. An approval of an earlier
        proposal (the original, before an edit) does not count for the edited one."""
        proposal = self.proposal_sha256
        return frozenset(
            v.person
            for v in self.votes
            if v.verdict is Verdict.APPROVE
            and (v.payload_sha256 or self.payload_sha256) == proposal
        )

    def level_starts(self) -> list[datetime]:
        """When each level begins: level i starts after the timeouts of levels before it."""
        starts = []
        moment = self.created_at
        for level in self.policy.levels:
            starts.append(moment)
            moment = moment + level.timeout
        return starts


@dataclass(frozen=True)
class CreateCommand:
    """An agent's request for approval, before policy and storage.

    Attributes:
        timeout: what the agent asks for; clamped to the policy's min/max bounds.
        request_id: a caller-chosen id (tests); a random one otherwise.
        idempotency_key: the agent's ``Idempotency-Key``: a retry with the same key and the
            same command returns the first request instead of making another.
        agent_key_id: the API key the command came with, if it came with one. The write
            confirms in its own transaction that the key is still live and the agent's, so
            a key revoked after it was last checked creates nothing.
    """

    agent: str
    action: str
    title: str
    details: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    requested_by: str | None = None
    timeout: timedelta | None = None
    callback_url: str | None = None
    request_id: str | None = None
    idempotency_key: str | None = None
    max_open: int | None = None
    agent_key_id: str | None = None

    def fingerprint(self) -> str:
        """SHA-256 of what the agent asked for: a replayed key must ask for the same."""
        body = {
            "action": self.action,
            "title": self.title,
            "details": self.details,
            "params": self.params,
            "requested_by": self.requested_by,
            "timeout": None if self.timeout is None else self.timeout.total_seconds(),
            "callback_url": self.callback_url,
        }
        return hashlib.sha256(canonical_json(body)).hexdigest()


@dataclass(frozen=True)
class LinkUse:
    """The signed decision link a vote came through (see :mod:`approvals.links`).

    Attributes:
        nonce: the link's single-use number; spent in the vote's own transaction.
        expires_at: when the link stops working.
    """

    nonce: str
    expires_at: datetime


@dataclass(frozen=True)
class VoteCommand:
    """A click, normalized by an adapter: which platform identity said what about which request.

    ``identity`` is the platform's immutable user id (for the web inbox, the signed-in
    person's name). It is resolved to a person by the core, never by the adapter.
    ``link`` is set when the vote comes through a signed decision link (an email's
    Approve or Deny): the core refuses it once the link has expired or been used, and
    spends the link in the same transaction that counts the vote.
    """

    request_id: str
    platform: str
    identity: str
    verdict: Verdict
    reason: str | None = None
    link: LinkUse | None = None
    shown_payload_sha256: str | None = None
    edited_params: dict[str, Any] | None = None
    confirm_token: str | None = None
    """``shown_payload_sha256`` is the hash of the payload the person's page showed (the
    web inbox's forms carry it); ``None`` from a chat card, which always shows the
    original. ``edited_params`` is an approval with edits: the params the person approves
    instead of the proposal they were shown. ``confirm_token`` is the token of the
    confirmation the person was shown (:mod:`approvals.confirm`): an approval under a
    policy that needs confirming counts only with a genuine one."""
    grant_for: timedelta | None = None
    """An approval for a while ("Approve for 1 h"): the length of the grant asked for;
    refused when the policy has no grants or allows less (:mod:`approvals.grants`)."""


def public_json(request: ApprovalRequest) -> dict[str, Any]:
    """The public JSON form of a request (DESIGN.md, "Agent API JSON"): what the agent API
    returns and what a webhook carries."""
    decision = request.decision
    return {
        "id": request.id,
        "status": request.status.value,
        "action": request.action,
        "title": request.title,
        "details": request.details,
        "params": request.params,
        "payload_sha256": request.payload_sha256,
        "requested_by": request.requested_by,
        "policy": request.policy.name,
        "level": request.level,
        "created_at": request.created_at.isoformat(),
        "deadline": request.deadline.isoformat(),
        "decided_at": request.decided_at.isoformat() if request.decided_at else None,
        "decision": decision.to_json() if decision else None,
        "votes": [vote.to_json() for vote in request.votes],
        # Only an approval binds an edit; while pending an edit is a proposal, and a denied
        # request approved nothing.
        "edited_params": request.edited_params if request.status is Status.APPROVED else None,
        "edited_payload_sha256": (
            request.edited_payload_sha256 if request.status is Status.APPROVED else None
        ),
    }
