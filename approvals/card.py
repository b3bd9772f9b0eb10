"""The approval card: what every platform shows for a request, before platform rendering.

Adapters render an :class:`ApprovalCard` with pure functions and their own limits; the
core decides what the card says, so every platform tells the same story. The rendering
decisions every platform shares live here too: where a card links (:func:`inbox_url`),
what the link says when the card could not show everything (:func:`inbox_link_text`), and
keeping track of what was cut (:class:`Cuts`). An adapter only spells them in its format,
with its own escaping and limits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from approvals.machine import Event, Status
from approvals.model import ApprovalRequest
from approvals.outcomes import AlreadyDecided, Applied, NotAllowed, NotFound, Outcome
from approvals.policy import Risk
from signoff_client.canonical import canonical_json

SHORT_HASH_LENGTH = 12


@dataclass(frozen=True)
class CardField:
    """One labelled value. ``value`` is untrusted agent text; adapters escape it."""

    label: str
    value: str


@dataclass(frozen=True)
class ApprovalCard:
    """Everything a platform message about a request shows.

    Attributes:
        request_id: the request this card is for (adapters build button references from it).
        fields: the request's ``params``, one field per top-level key, values as JSON text.
        status_line: one line saying where the request stands ("Waiting for 1 more approval").
        buttons: whether Approve / Deny are offered (only while pending).
        note: an extra line, e.g. "Escalated to level 1" or "Reminder".
    """

    request_id: str
    title: str
    agent: str
    action: str
    details: str
    fields: tuple[CardField, ...]
    payload_sha256: str
    policy: str
    level: int
    deadline: datetime
    status: Status
    status_line: str
    buttons: bool
    require_reason: bool
    note: str | None = None
    requested_by: str | None = None
    """The human the agent acts for, if it said (untrusted agent text)."""
    edits_allowed: bool = False
    """Whether approvers may change the params before approving (the policy's ``edits``).
    Edits are made on the request's inbox page, so a pending card shows a link there (a
    URL button where the platform has them: a link, never a decision)."""

    @property
    def edit_link(self) -> bool:
        """Whether the card offers :data:`EDIT_LINK_TEXT`: pending, under a policy that
        allows edits."""
        return self.edits_allowed and self.buttons

    risk: Risk | None = None
    """The policy's risk rating, shown first as a coloured label (``None``: not rated)."""
    summary: str | None = None
    """The policy's ``describe`` line for this request, shown first (partly agent text)."""
    levels: int = 1
    """How many escalation levels the request's policy has."""

    @property
    def level_text(self) -> str:
        """The card's level as every platform shows it (:func:`level_label`)."""
        return level_label(self.level, self.levels)

    grant_choices: tuple[timedelta, ...] = ()
    """The "Approve for ..." lengths a pending card offers (the policy's ``grants``,
    :mod:`approvals.grants`); empty where the policy has none."""

    @property
    def approve_for(self) -> tuple[timedelta, ...]:
        """The "Approve for ..." lengths to show now: only while pending."""
        return self.grant_choices if self.buttons else ()

    @property
    def short_hash(self) -> str:
        return self.payload_sha256[:SHORT_HASH_LENGTH]


RISK_MARKS = {Risk.LOW: "🟢", Risk.MEDIUM: "🟡", Risk.HIGH: "🟠", Risk.CRITICAL: "🔴"}
"""The colour of each risk where a platform can only colour with characters."""


_POSITIONS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")


def level_label(level: int, levels: int) -> str:
    """How cards and pages name an escalation level: by the 0-based number the agent API,
    ``signoff status``, ``signoff explain`` and the audit use, followed by where it stands
    in words, so nobody needs to know that the numbering starts at 0: ``0 (first of 2)``,
    ``1 (last of 2)``, ``0 (the only level)``."""
    if levels <= 1:
        return f"{level} (the only level)"
    if level == levels - 1:
        position = "last"
    elif level < len(_POSITIONS):
        position = _POSITIONS[level]
    else:
        return f"{level} (of 0-{levels - 1})"
    return f"{level} ({position} of {levels})"


def risk_label(risk: Risk) -> str:
    """The label every platform shows first for a rated policy: ``🔴 Critical risk``."""
    return f"{RISK_MARKS[risk]} {risk.value.capitalize()} risk"


def card_headline(card: ApprovalCard, fit: Callable[[str, int], str], limit: int) -> str | None:
    """The first line of a card (or of its confirmation) where a platform writes it as
    text: the policy's risk label and its describe line, when the policy has them, joined
    by `` · ``. ``fit`` is the platform's own (made safe for its format, cut to ``limit``):
    the describe line is partly agent text."""
    parts = [risk_label(card.risk)] if card.risk else []
    if card.summary:
        parts.append(fit(card.summary, limit))
    return " · ".join(parts) or None


def inbox_url(public_url: str, request_id: str) -> str:
    """The web inbox page of a request: where every card links for the whole request."""
    return f"{public_url.rstrip('/')}/requests/{request_id}"


EDIT_LINK_TEXT = "Edit in inbox"
"""The card's link to the request's inbox page where the policy lets approvers edit."""


def inbox_link_text(*, hidden_params: int = 0, cut: bool = False) -> str:
    """What a card's link to the inbox says: what the card left out, when it left
    anything out (parameters it had no room for, values it had to cut)."""
    if hidden_params > 0:
        return f"{hidden_params} more parameters and the full values in the signoff inbox"
    if cut:
        return "Full values in the signoff inbox"
    return "Open in the signoff inbox"


class Cuts:
    """Fits untrusted texts into a platform's limits and remembers whether any had to be cut.

    ``fit`` is the platform's own: it makes a text safe for the platform's format and cuts
    it to a limit, returning the result and whether it cut.
    """

    def __init__(self, fit: Callable[[str, int], tuple[str, bool]]) -> None:
        self._fit = fit
        self.any = False
        """Whether any text fitted so far was cut."""

    def __call__(self, text: str, limit: int) -> str:
        shown, was_cut = self._fit(text, limit)
        self.any = self.any or was_cut
        return shown


def _status_line(request: ApprovalRequest) -> str:
    decision = request.decision
    if request.status is Status.PENDING:
        have = len(request.approvals())
        need = request.policy.quorum
        if request.edited_params is not None:
            # Chat buttons approve what the card shows, the original: the edit is approved
            # on the inbox page, which shows it.
            return (
                f"Pending: params edited by an approver, {have} of {need} approvals of the "
                "edit; approve it in the signoff inbox"
            )
        if need > 1:
            return f"Pending: {have} of {need} approvals"
        return "Pending: waiting for a decision"
    assert decision is not None, "a final request always has a decision"
    verb = request.status.value.capitalize()
    when = f" at {request.decided_at:%Y-%m-%d %H:%M} UTC" if request.decided_at else ""
    if decision.by == "timeout":
        line = f"{verb}: nobody decided before the deadline{when}"
    elif decision.by.startswith("policy:"):
        line = f"{verb} automatically by policy {decision.by.removeprefix('policy:')}{when}"
    elif request.status is Status.CANCELLED:
        line = f"Cancelled by the requesting agent{when}"
    elif decision.by_grant and decision.grant is not None:
        grant = decision.grant
        line = (
            f"Approved by {' and '.join(grant.given_by)}'s grant {grant.id} (until "
            f"{grant.until:%Y-%m-%d %H:%M} UTC){when}"
        )
    else:
        counted = request.approvals()  # of the approved payload only, in voting order
        approvers = [v.person for v in request.votes if v.person in counted]
        who = ", ".join(approvers) if request.status is Status.APPROVED else decision.by
        if request.status is Status.APPROVED and request.edited_params is not None:
            verb = "Approved with edited params"
        line = f"{verb} by {who}{when}"
        if decision.grant is not None:
            # This approval also gave a time-boxed grant.
            line += f", for the same requests until {decision.grant.until:%Y-%m-%d %H:%M} UTC"
    if decision.reason:
        line += f" (reason: {decision.reason})"
    return line


def build_card(
    request: ApprovalRequest, *, note: str | None = None, warning: str | None = None
) -> ApprovalCard:
    """The card for a request as it stands now.

    ``note`` is the moment's extra line (a reminder, an escalation); ``warning`` is what
    the card must always say, such as who may not decide because the request only looks
    like it is for them. Both are shown as the card's note, the warning first.
    """
    fields = tuple(
        CardField(label=str(key), value=json.dumps(value, ensure_ascii=False, sort_keys=True))
        for key, value in request.params.items()
    )
    return ApprovalCard(
        request_id=request.id,
        title=request.title,
        agent=request.agent,
        action=request.action,
        details=request.details,
        fields=fields,
        payload_sha256=request.payload_sha256,
        policy=request.policy.name,
        level=request.level,
        deadline=request.deadline,
        status=request.status,
        status_line=_status_line(request),
        buttons=request.status is Status.PENDING,
        require_reason=request.policy.require_reason,
        note=" · ".join(line for line in (warning, note) if line) or None,
        requested_by=request.requested_by,
        edits_allowed=request.policy.allows_edits,
        risk=request.policy.risk,
        summary=describe_request(request),
        levels=len(request.policy.levels),
        grant_choices=request.policy.grants.choices() if request.policy.grants else (),
    )


def describe_request(request: ApprovalRequest) -> str | None:
    """The policy's ``describe`` line for ``request``, or ``None`` when it has none."""
    template = request.policy.describe
    if template is None:
        return None
    return template.render(
        action=request.action,
        agent=request.agent,
        title=request.title,
        requested_by=request.requested_by,
        params=request.params,
    )


CardBuilder = Callable[[ApprovalRequest, str | None], ApprovalCard]
"""Builds a request's card with a note: :meth:`ApprovalService.card_for`, which knows the
configured people, or plain :func:`build_card`."""


DIGEST_POLICY = "flood guard"
"""What a digest card shows where a request card shows its policy."""


@dataclass(frozen=True)
class Digest:
    """An agent's requests gathered on one digest card instead of a card each.

    Attributes:
        digest_id: the digest's id (the card's ``request_id``).
        agent: the agent whose requests these are.
        waiting: the gathered requests still pending, oldest first.
        first_deadline: the earliest deadline among them.
        cards_per_minute: the limit that made signoff gather them.
    """

    digest_id: str
    agent: str
    waiting: tuple[str, ...]
    first_deadline: datetime | None
    cards_per_minute: int


def build_digest_card(state: Digest, *, now: datetime) -> ApprovalCard:
    """The digest card of an agent's requests that were not posted one by one.

    It has no buttons: the requests are decided in the web inbox. Its payload hash is the
    hash of the waiting request ids, so the card changes whenever the set does; its
    deadline is the earliest among them.
    """
    count = len(state.waiting)
    requests = "request" if count == 1 else "requests"
    if count:
        title = f"{count} more {requests} from agent {state.agent} are waiting"
        status_line = f"Waiting: {count} {requests}, to be decided in the web inbox"
    else:
        title = f"No more requests from agent {state.agent} are waiting here"
        status_line = "Every request gathered here has been decided"
    details = (
        f"Agent {state.agent} sent more than {state.cards_per_minute} requests a minute here, so "
        "signoff gathers the rest on this card instead of posting each one. Open the web "
        "inbox to see and decide them; cards are posted one by one again once the agent "
        "slows down."
    )
    digest = hashlib.sha256(canonical_json(list(state.waiting))).hexdigest()
    return ApprovalCard(
        request_id=state.digest_id,
        title=title,
        agent=state.agent,
        action="(several)",
        details=details,
        fields=(),
        payload_sha256=digest,
        policy=DIGEST_POLICY,
        level=0,
        deadline=state.first_deadline or now,
        status=Status.PENDING,
        status_line=status_line,
        buttons=False,
        require_reason=False,
    )


def outcome_notice(outcome: Outcome) -> str | None:
    """What a person who clicked is told privately, in any chat platform's words.

    ``None`` when the card's own edit says it all (the click decided the request).
    """
    if isinstance(outcome, Applied):
        if outcome.event is Event.VOTE:
            return f"Your approval was counted. {build_card(outcome.request).status_line}."
        return None
    if isinstance(outcome, AlreadyDecided):
        return f"Nothing changed: this request is {outcome.message}."
    if isinstance(outcome, NotAllowed):
        return f"Your click was not counted: {outcome.message}."
    if isinstance(outcome, NotFound):
        return "This request no longer exists."
    return None
