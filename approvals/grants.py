"""Time-boxed grants: an approver's "yes to this for the next hour".

Where a policy allows it (``grants: {max: 1h}``), an approver may approve a request *for* a
while: 15 minutes, an hour, or up to the policy's ``max``. While that grant lasts, the same
agent asking the same action with the same params (or the same values at the paths the
policy's ``grants.match`` names) is approved at once, by the grant, and nobody is asked.

This module holds the rules and values; the service applies them
(:meth:`approvals.service.ApprovalService.create` looks a grant up, a vote gives one) and
:mod:`approvals.store.grants` stores them. What keeps a grant honest:

- it ends exactly at its bound (``now < expires_at`` is live; at ``expires_at`` it is over);
- a quorum policy's grant needs the quorum: every counted approval must have asked for a
  grant, and the grant lasts the shortest length asked;
- four-eyes: a grant never approves a request made on behalf of one of its givers;
- it is checked against the config at each use: a giver no longer an approver of the
  policy, or a policy whose grants were removed or changed, approves nothing (and a reload
  ends such grants, audited);
- it can be revoked at any time, by a giver, an approver of the policy or an admin.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from signoff_client.canonical import canonical_json

GRANT_STEPS = (timedelta(minutes=15), timedelta(hours=1))
"""The lengths offered to approvers, besides the policy's ``max`` itself."""
MAX_GRANT = timedelta(days=7)
"""The longest ``grants.max`` a policy may set."""
PARAMS_PREFIX = "params."
"""How ``grants.match`` entries name a value inside ``params`` (``params.table``)."""


def grant_id_for(request_id: str) -> str:
    """The id of the grant a request's approval gives (one at most): derived from the
    request's id, so a command that runs twice makes the same grant. Short enough to type."""
    digest = hashlib.sha256(b"signoff-grant:" + request_id.encode()).digest()
    return "g_" + base64.urlsafe_b64encode(digest[:12]).decode("ascii")


def length_text(length: timedelta) -> str:
    """A grant's length as people say it: ``15 min``, ``1 h``, ``1 h 30 min``, ``2 d``."""
    seconds = int(length.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours)
    parts += [f"{minutes} min"] * bool(minutes) + [f"{seconds} s"] * bool(seconds)
    return " ".join(parts) or "0 s"


@dataclass(frozen=True)
class GrantRule:
    """A policy's ``grants``: how long a grant may last and what a later request must share.

    Attributes:
        max: the longest grant an approver may give.
        match: the params paths (``params.table``) a later request must have the same
            values at; empty means the whole params (the same payload).
    """

    max: timedelta
    match: tuple[str, ...] = ()

    def choices(self) -> tuple[timedelta, ...]:
        """The lengths offered to approvers: 15 min and 1 h where they fit, and ``max``."""
        offered = {step for step in GRANT_STEPS if step < self.max} | {self.max}
        return tuple(sorted(offered))

    def matched_values(self, params: dict[str, Any]) -> dict[str, Any]:
        """What of ``params`` a grant is about: the whole params, or the value at each
        ``match`` path that the request has (a path it lacks is left out, so a request
        lacking it matches only grants given on a request lacking it too)."""
        if not self.match:
            return {"params": params}
        values: dict[str, Any] = {}
        for path in self.match:
            found, value = _lookup(params, path.removeprefix(PARAMS_PREFIX).split("."))
            if found:
                values[path] = value
        return values

    def match_key(self, action: str, params: dict[str, Any]) -> str:
        """The SHA-256 a grant and a later request are matched by: the action, which paths
        are compared (so a changed ``match`` never reuses an old grant) and their values,
        as canonical JSON."""
        body = {
            "action": action,
            "match": list(self.match) or "params",
            "values": self.matched_values(params),
        }
        return hashlib.sha256(canonical_json(body)).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"max_seconds": self.max.total_seconds(), "match": list(self.match)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GrantRule:
        return cls(max=timedelta(seconds=data["max_seconds"]), match=tuple(data.get("match", ())))


def _lookup(value: Any, path: list[str]) -> tuple[bool, Any]:
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return False, None
    return True, value


@dataclass(frozen=True)
class GrantRef:
    """What a request approved by a grant records about it (and its receipt signs)."""

    id: str
    given_by: tuple[str, ...]
    given_at: datetime
    until: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "given_by": list(self.given_by),
            "given_at": self.given_at.isoformat(),
            "until": self.until.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GrantRef:
        return cls(
            id=data["id"],
            given_by=tuple(data["given_by"]),
            given_at=datetime.fromisoformat(data["given_at"]),
            until=datetime.fromisoformat(data["until"]),
        )


@dataclass(frozen=True)
class Grant:
    """One grant as stored.

    Attributes:
        policy: the name of the policy it was given under.
        agent: the agent whose requests it approves.
        action: the action it approves.
        match_key: see :meth:`GrantRule.match_key`.
        match_paths: the policy's ``grants.match`` when it was given (empty: all params).
        matched: the values it covers, for people to read (:meth:`GrantRule.matched_values`).
        given_by: the approvers who gave it (a quorum's every approver).
        source_request_id: the request whose approval gave it.
        revoked_at, revoked_by, revoke_reason: set once it was ended early.
    """

    id: str
    policy: str
    agent: str
    action: str
    match_key: str
    match_paths: tuple[str, ...]
    matched: dict[str, Any]
    given_by: tuple[str, ...]
    given_at: datetime
    expires_at: datetime
    source_request_id: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    def is_live(self, now: datetime) -> bool:
        """Not revoked, and ``now`` is before its bound (at the bound it is over)."""
        return self.revoked_at is None and now < self.expires_at

    @property
    def length(self) -> timedelta:
        return self.expires_at - self.given_at

    def ref(self) -> GrantRef:
        return GrantRef(self.id, self.given_by, self.given_at, self.expires_at)

    def to_json(self) -> dict[str, Any]:
        """The grant as the admin API and ``signoff grants list`` show it."""
        return {
            "id": self.id,
            "policy": self.policy,
            "agent": self.agent,
            "action": self.action,
            "match": list(self.match_paths) or "params",
            "matched": self.matched,
            "given_by": list(self.given_by),
            "given_at": self.given_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "source_request_id": self.source_request_id,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revoked_by": self.revoked_by,
            "revoke_reason": self.revoke_reason,
        }


@dataclass(frozen=True)
class GrantRevoked:
    """A revoke's outcome: the grant as it is now; ``already_ended`` when it had expired
    or been revoked before (nothing changed then)."""

    grant: Grant
    already_ended: bool


MATCHED_TEXT_LIMIT = 80
"""How much of a grant's matched values a one-line listing shows."""


def matched_text(grant: Grant, limit: int = MATCHED_TEXT_LIMIT) -> str:
    """What a grant covers, in one line: ``all params {...}`` or ``params.table="users"``
    (agent text: escape it where it is shown)."""
    if not grant.match_paths:
        text = "all params " + json.dumps(grant.matched.get("params"), ensure_ascii=False)
    else:
        text = ", ".join(
            f"{path}={json.dumps(grant.matched[path], ensure_ascii=False)}"
            if path in grant.matched
            else f"{path} absent"
            for path in grant.match_paths
        )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def grant_length(asked: Iterable[timedelta | None]) -> timedelta | None:
    """How long the grant an approval makes lasts: the shortest length the counted
    approvals asked for, or ``None`` (no grant) when any of them asked for none."""
    lengths = list(asked)
    if not lengths or any(length is None for length in lengths):
        return None
    return min(length for length in lengths if length is not None)


def grant_length_problem(rule: GrantRule | None, policy: str, length: timedelta) -> str | None:
    """Why an approver may not ask for a grant of ``length``, or ``None`` if they may."""
    if rule is None:
        return f"policy {policy} does not allow approving for a while (it has no grants)"
    if length <= timedelta(0):
        return "a grant must last a positive time"
    if length > rule.max:
        return (
            f"policy {policy} allows grants of at most {length_text(rule.max)}, "
            f"not {length_text(length)}"
        )
    return None


def stale_because(grant: Grant, rule: GrantRule | None, approvers: frozenset[str]) -> str | None:
    """Why a stored grant no longer holds under the current config, or ``None``.

    Args:
        grant: the stored grant.
        rule: the grant's policy's current ``grants`` (``None``: removed, or no policy).
        approvers: everyone who may approve under that policy now (all levels).
    """
    if rule is None:
        return f"policy {grant.policy} no longer allows grants"
    if grant.match_paths != rule.match:
        return f"policy {grant.policy} now matches grants on other params"
    if grant.length > rule.max:
        return f"policy {grant.policy} now allows grants of at most {length_text(rule.max)}"
    gone = [person for person in grant.given_by if person not in approvers]
    if gone:
        return f"{', '.join(gone)} no longer approve(s) for policy {grant.policy}"
    return None


def approval_reason(grant: Grant) -> str:
    """The decision reason of a request a grant approved: whose grant, when, until when."""
    return (
        f"approved by grant {grant.id}, given by {' and '.join(grant.given_by)} at "
        f"{_utc(grant.given_at)}, until {_utc(grant.expires_at)}"
    )


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
