"""A click on a card, as the core receives it, and what the core answers.

An adapter reads a click off its platform (who pressed which button on which message) and
hands it over as a :class:`Click`; everything else is decided in the core, in one write
(``ApprovalService.handle_click``): whether the button is one of signoff's, whether the
message is the card signoff posted for that request on that platform, who the person is,
whether they may decide, and what the vote does (counts toward quorum, decides, or is
refused and audited). The adapter then tells the person what :func:`click_notice` says,
spelled in its platform's format.

Deny with a reason takes two clicks: the button that opens a form, and the form's
submission. ``ApprovalService.reason_prompt`` answers the first without counting anything:
the form to show (:class:`ReasonPrompt`), or the refusal the submission would meet, so that
nobody types a reason only to be refused.

Approve under a policy that needs confirming (``confirm``, see :mod:`approvals.confirm`)
takes two clicks the same way: ``ApprovalService.confirm_prompt`` answers the first Approve
with the confirmation to show (:class:`ConfirmPrompt`: the describe line, the risk, the
params and a token bound to the person), or the refusal the approval would meet; only a
click that carries the token back (:attr:`Click.confirm_token`) can count.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from approvals.card import ApprovalCard, outcome_notice
from approvals.directory import Destination
from approvals.model import Verdict
from approvals.outcomes import Outcome

MALFORMED_CLICK = "malformed_click"
"""Audit code: the button's reference is not one signoff made."""
WRONG_MESSAGE = "wrong_message"
"""Audit code: the message clicked is not a card signoff posted for that request there."""


@dataclass(frozen=True)
class Foreign:
    """The adapter found that a click comes from outside signoff's installation (another
    Slack workspace, another Discord application): it is refused and audited as such.

    Attributes:
        code: the audit code (``foreign_team``...).
        detail: what the audit entry says (which workspace, which application).
        why: what the person is told.
    """

    code: str
    detail: str
    why: str


@dataclass(frozen=True)
class Click:
    """A button press, or a submitted reason form, as an adapter read it. Untrusted.

    Attributes:
        platform: the adapter's platform name.
        identity: the platform's immutable id of the person who clicked.
        request_id: the request the button names; ``None`` when the reference is not one
            of signoff's.
        raw_reference: the button's reference as received, for the audit entry of a
            malformed one.
        message: where the clicked message is, in the terms of the platform's
            ``MessageRef`` (Slack ``{channel, ts}``, Discord ``{channel_id, message_id}``,
            Telegram ``{chat_id, message_id}``); ``None`` when the platform did not say.
        verdict: what the button says.
        reason: the reason typed in the form, for a deny with a reason.
        foreign: set when the adapter found the click comes from outside signoff's
            installation.
        grant_for: an "Approve for ..." button's length: the approval also asks to give
            a time-boxed grant that long (:mod:`approvals.grants`).
        confirm_token: the token of the confirmation the person was shown (the second step
            of an approval under a ``confirm`` policy); untrusted like the rest.
    """

    platform: str
    identity: str
    request_id: str | None
    raw_reference: str | None
    message: Mapping[str, Any] | None
    verdict: Verdict
    reason: str | None = None
    foreign: Foreign | None = None
    grant_for: timedelta | None = None
    confirm_token: str | None = None

    @property
    def actor(self) -> str:
        """Who clicked, as the audit log names platform accounts."""
        return f"{self.platform}:{self.identity}"


@dataclass(frozen=True)
class ClickRefused:
    """The click was not counted, before it could become a vote, and that was audited.

    Attributes:
        code: the audit code (:data:`MALFORMED_CLICK`, :data:`WRONG_MESSAGE`, or the
            adapter's :class:`Foreign` code).
        why: what the person is told.
    """

    code: str
    why: str


ClickOutcome = Outcome | ClickRefused
"""What a click came to: the vote's outcome, or a refusal before it was a vote."""


@dataclass(frozen=True)
class ReasonPrompt:
    """Show the person the reason form for this request.

    Attributes:
        request_id: the request it is for.
        title: the request's title, to show on the form.
        require_reason: whether the policy needs a reason (an empty form is refused).
    """

    request_id: str
    title: str
    require_reason: bool


@dataclass(frozen=True)
class ConfirmPrompt:
    """Show the person the confirmation of their approval; its submission carries ``token``.

    Attributes:
        request_id: the request it is for.
        card: the request's card as it stands: the risk, the describe line
            (``card.summary``), the title and the params (``card.fields``) to show.
        payload_sha256: the hash of the payload being approved (bound into the token).
        params: the params being approved: the proposal, or the person's own edit.
        token: the confirmation token for this person, request and payload.
        expires_at: when the token stops working.
    """

    request_id: str
    card: ApprovalCard
    payload_sha256: str
    params: Mapping[str, Any]
    token: str
    expires_at: datetime


def click_notice(outcome: ClickOutcome) -> str | None:
    """What the person who clicked is told privately; ``None`` when the card's own edit
    says it all (the click decided the request)."""
    if isinstance(outcome, ClickRefused):
        return f"Your click was not counted: {outcome.why}."
    return outcome_notice(outcome)


def is_card_of(click: Click, deliveries: Iterable[Any]) -> bool:
    """Whether the clicked message is one of ``deliveries`` (a request's posted cards) on
    the click's platform: every field the click gives matches the card's reference."""
    if click.message is None or not click.message:
        return False
    wanted = {key: str(value) for key, value in click.message.items()}
    for delivery in deliveries:
        ref = delivery.ref
        if ref is None or Destination.from_key(delivery.destination).platform != click.platform:
            continue
        if all(key in ref and str(ref[key]) == value for key, value in wanted.items()):
            return True
    return False


class RecentCards:
    """Cards this process has just posted, newest kept, size bounded.

    A card's reference reaches the database only after the platform answered the send
    and the outbox recorded it; a click in that moment must still be recognised as a
    click on our card. The outbox tells this memory as soon as a send returns.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._cards: OrderedDict[tuple[str, tuple[tuple[str, str], ...]], str] = OrderedDict()

    @staticmethod
    def _key(platform: str, ref: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
        return platform, tuple(sorted((key, str(value)) for key, value in ref.items()))

    def remember(self, platform: str, ref: Mapping[str, Any], request_id: str) -> None:
        key = self._key(platform, ref)
        self._cards[key] = request_id
        self._cards.move_to_end(key)
        while len(self._cards) > self._capacity:
            self._cards.popitem(last=False)

    def is_card_of(self, click: Click) -> bool:
        if click.message is None or click.request_id is None:
            return False
        return self._cards.get(self._key(click.platform, click.message)) == click.request_id
