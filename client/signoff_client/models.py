"""Typed views of the agent API's JSON: a request (``Approval``), its decision and votes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

from signoff_client.errors import SignoffError

ApprovalStatus = Literal["pending", "approved", "denied", "expired", "cancelled"]
STATUSES: frozenset[str] = frozenset({"pending", "approved", "denied", "expired", "cancelled"})
FINAL_STATUSES: frozenset[str] = STATUSES - {"pending"}
SYSTEM_PLATFORM = "system"
"""The ``platform`` of decisions nobody clicked: a policy's own decision and timeouts."""


@dataclass(frozen=True)
class Vote:
    """One person's vote on a request."""

    person: str
    verdict: Literal["approve", "deny"]
    platform: str
    reason: str | None
    cast_at: datetime


@dataclass(frozen=True)
class Decision:
    """How a request became final: the verdict, who decided (a person; the agent for a
    cancel), on which platform (``system`` for policy decisions and timeouts), and why.

    ``grant`` is set when a time-boxed grant approved the request at once (``platform`` is
    ``grant``): ``{id, given_by, given_at, until}``, the people who gave it, when, and
    until when it lasts."""

    verdict: Literal["approved", "denied", "expired", "cancelled"]
    by: str
    platform: str
    reason: str | None
    grant: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Approval:
    """A request for approval as the API reports it.

    ``params`` is the exact payload the approvers saw; ``payload_sha256`` is the SHA-256 of
    the canonical JSON of ``{action, params}``, which the receipt signs. When an approver
    changed the params before approving (a policy with ``edits: allowed``),
    ``edited_params`` holds what was approved and ``edited_payload_sha256`` its hash, which
    the receipt signs instead: run ``params_to_run``, never ``params``. ``raw`` keeps the
    JSON object as it came, for printing or passing on.
    """

    id: str
    status: ApprovalStatus
    action: str
    title: str
    details: str
    params: dict[str, Any]
    payload_sha256: str
    requested_by: str | None
    policy: str
    level: int
    created_at: datetime
    deadline: datetime
    decided_at: datetime | None
    decision: Decision | None
    votes: tuple[Vote, ...]
    edited_params: dict[str, Any] | None = None
    edited_payload_sha256: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_final(self) -> bool:
        """True once the request is approved, denied, expired or cancelled."""
        return self.status != "pending"

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @property
    def edited(self) -> bool:
        """True when the approvers changed the params before approving."""
        return self.edited_params is not None

    @property
    def params_to_run(self) -> dict[str, Any]:
        """The params that may run: the edited ones when an approver changed them."""
        return self.edited_params if self.edited_params is not None else self.params

    @property
    def payload_sha256_to_run(self) -> str:
        """The hash the receipt binds: of the edited payload when there is one."""
        return self.edited_payload_sha256 or self.payload_sha256

    @property
    def approvers(self) -> tuple[str, ...]:
        """The persons whose approvals counted, in the order they voted."""
        return tuple(vote.person for vote in self.votes if vote.verdict == "approve")

    @property
    def decided_by_people(self) -> bool:
        """True when persons decided it, not a policy, the deadline or the agent's cancel."""
        decision = self.decision
        return (
            decision is not None
            and decision.platform != SYSTEM_PLATFORM
            and self.status in ("approved", "denied")
        )

    @property
    def deciders(self) -> tuple[str, ...]:
        """The persons whose votes made the final status, as the receipt names them.

        Approved: everyone whose approval counted (a quorum of two names both); by a
        time-boxed grant, the people who gave it. Denied: the
        person who denied, never those who approved before. Nobody (empty) while pending,
        for a policy's decision, a timeout, an expiry and a cancel.
        """
        if not self.decided_by_people or self.decision is None:
            return ()
        if self.decision.grant is not None and self.decision.platform == "grant":
            return tuple(str(person) for person in self.decision.grant.get("given_by", ()))
        if self.status == "approved":
            return self.approvers or (self.decision.by,)
        return (self.decision.by,)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Approval:
        """Read a request from the API's JSON.

        Raises:
            SignoffError: when the JSON is not a request as the API describes it.
        """
        try:
            status = str(data["status"])
            if status not in STATUSES:
                raise ValueError(f"unknown status {status!r}")
            decision = data.get("decision")
            return cls(
                id=_text(data["id"]),
                status=cast(ApprovalStatus, status),
                action=_text(data["action"]),
                title=_text(data["title"]),
                details=str(data.get("details") or ""),
                params=dict(data["params"]),
                payload_sha256=_text(data["payload_sha256"]),
                requested_by=data.get("requested_by"),
                policy=str(data.get("policy") or ""),
                level=int(data.get("level") or 0),
                created_at=_moment(data["created_at"]),
                deadline=_moment(data["deadline"]),
                decided_at=_moment(data["decided_at"]) if data.get("decided_at") else None,
                decision=Decision(
                    verdict=decision["verdict"],
                    by=str(decision["by"]),
                    platform=str(decision["platform"]),
                    reason=decision.get("reason"),
                    grant=decision.get("grant"),
                )
                if decision
                else None,
                votes=tuple(
                    Vote(
                        person=str(vote["person"]),
                        verdict=vote["verdict"],
                        platform=str(vote["platform"]),
                        reason=vote.get("reason"),
                        cast_at=_moment(vote["cast_at"]),
                    )
                    for vote in data.get("votes") or ()
                ),
                edited_params=_edited_params(data.get("edited_params")),
                edited_payload_sha256=data.get("edited_payload_sha256") or None,
                raw=data,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SignoffError(f"the server's answer is not a signoff request: {exc!r}") from exc


def _edited_params(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"edited_params must be an object, got {type(value).__name__}")
    return dict(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _moment(value: Any) -> datetime:
    moment = datetime.fromisoformat(_text(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {value!r} has no time zone")
    return moment
