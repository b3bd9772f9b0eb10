"""What a command on a request came to, as values: created, applied, already decided, refused,
unknown.

User-facing outcomes are values, not exceptions; adapters and the API render each one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from approvals.machine import Event, Status
from approvals.model import ApprovalRequest


class RefusalCode(StrEnum):
    """Why a command was not allowed."""

    UNKNOWN_IDENTITY = "unknown_identity"  # the platform account maps to no person
    NOT_AN_APPROVER = "not_an_approver"  # the person may not decide this request (yet)
    REQUESTER = "requester"  # four-eyes: the person the request is for cannot decide it
    ALREADY_VOTED = "already_voted"  # one vote per person, whatever the platform
    REASON_REQUIRED = "reason_required"  # the policy wants a reason to deny
    NOT_OWNER = "not_owner"  # only the requesting agent may cancel
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"  # a reused Idempotency-Key, another body
    TOO_MANY_OPEN = "too_many_open_requests"  # the agent's max_open pending requests reached
    INVALID = "invalid"  # the command itself is malformed
    EDITS_FORBIDDEN = "edits_forbidden"  # the policy does not let approvers change params
    STALE_PROPOSAL = "stale_proposal"  # the person saw another payload than the one proposed
    UNCONFIRMED = "unconfirmed_approval"  # an approval the policy needs confirmed was not
    KEY_REVOKED = "unauthorized"  # the agent's API key was revoked since it was last checked
    GRANTS_FORBIDDEN = "grants_forbidden"  # "approve for a while" beyond what the policy allows


@dataclass(frozen=True)
class Applied:
    """The command changed the request. ``event`` says how; ``request`` is the new state."""

    request: ApprovalRequest
    event: Event


@dataclass(frozen=True)
class Created:
    """A new request was stored (and, under an auto-deciding policy, already decided).

    ``replayed`` is true when an ``Idempotency-Key`` matched an earlier identical create:
    ``request`` is then that earlier request, as it stands now. ``reused`` is true when the
    agent already had an identical request pending: ``request`` is that one, and no new
    request was made.
    """

    request: ApprovalRequest
    replayed: bool = False
    reused: bool = False

    @property
    def is_new(self) -> bool:
        """Whether this create stored a new request."""
        return not (self.replayed or self.reused)


@dataclass(frozen=True)
class AlreadyDecided:
    """The request was already final; nothing changed."""

    request: ApprovalRequest

    @property
    def status(self) -> Status:
        return self.request.status

    @property
    def by(self) -> str | None:
        return self.request.decision.by if self.request.decision else None

    @property
    def at(self) -> datetime | None:
        return self.request.decided_at

    @property
    def message(self) -> str:
        """Human text, e.g. ``already approved by alice at 2030-01-01 12:03 UTC``."""
        text = f"already {self.status.value}"
        if self.by:
            text += f" by {self.by}"
        if self.at:
            text += f" at {self.at:%Y-%m-%d %H:%M} UTC"
        return text


@dataclass(frozen=True)
class NotAllowed:
    """The command was refused; ``message`` says why in words a person understands."""

    code: RefusalCode
    message: str


@dataclass(frozen=True)
class NotFound:
    """No request has this id."""

    request_id: str

    @property
    def message(self) -> str:
        return f"no request with id {self.request_id!r}"


Outcome = Applied | AlreadyDecided | NotAllowed | NotFound
