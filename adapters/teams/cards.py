"""Approval cards as Adaptive Cards for Teams: pure functions over :class:`ApprovalCard`.

Agent text is untrusted. Teams renders a Markdown subset in ``TextBlock`` and ``FactSet``
text (so ``[a](url)`` would become a link and ``**`` would restyle the card) but shows a
``RichTextBlock``'s ``TextRun`` verbatim, and a mention needs an entity that only the
sender can add. So agent text only ever fills ``TextRun``\\ s (and the reason box), with
invisible and direction-changing characters shown as markers; ``TextBlock`` holds the
product's own labels. No mention entities are ever sent.

Buttons are Universal Actions (``Action.Execute``): a click arrives as an invoke that the
bot answers with the card to show. Each carries ``data = {"action": ..., "request": id}``;
the deny-with-reason form is an ``Action.ShowCard`` holding the reason box and its own
Deny button, whose submission brings the typed reason in the same ``data``.

A card stays under :data:`CARD_BUDGET` bytes of JSON: Teams refuses messages over about
28 KB from some senders and 100 KB from bots, so parameters that do not fit are left to
the web inbox, and the card's link says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from approvals.card import (
    EDIT_LINK_TEXT,
    ApprovalCard,
    Cuts,
    inbox_link_text,
    inbox_url,
    risk_label,
)
from approvals.clicks import ConfirmPrompt
from approvals.grants import length_text
from approvals.machine import Status
from approvals.policy import Risk
from approvals.text import cut, reveal_invisible

CARD_VERSION = "1.5"
"""Universal Actions need 1.4; Teams documents them with 1.5."""
CARD_BUDGET = 28_000
"""Bytes of JSON a card may take (Teams counts UTF-16 units; this counts UTF-8 bytes,
which is never less for the text a card holds)."""
TITLE_LIMIT = 300
SUMMARY_LIMIT = 300
NAME_LIMIT = 200
"""Agent, action, policy and parameter names."""
DETAILS_LIMIT = 2000
PARAM_VALUE_LIMIT = 1000
MAX_PARAMS = 30
NOTE_LIMIT = 600
STATUS_LIMIT = 1000
NOTICE_LIMIT = 1500
REASON_LIMIT = 2000
"""The longest deny reason the reason box accepts (the core's own limit)."""

APPROVE = "signoff.approve"
DENY = "signoff.deny"
DENY_WITH_REASON = "signoff.deny_with_reason"
"""The ``data.action`` of each button (the Teams SDK routes card actions on it)."""
CONFIRM = "signoff.confirm_approve"
"""The confirmation card's Confirm approve: carries the person's confirmation token."""
CANCEL = "signoff.cancel_confirmation"
"""The confirmation card's Cancel: shows the card again, records nothing."""
ACTIONS = (APPROVE, DENY, DENY_WITH_REASON, CONFIRM, CANCEL)
REASON_INPUT = "reason"
"""The id of the reason box; its text arrives as ``data.reason``."""
GRANT_SECONDS = "grant_seconds"
"""The data key of an "Approve for ..." button: the grant's length in seconds."""

_RISK_COLOURS = {
    Risk.LOW: "good",
    Risk.MEDIUM: "warning",
    Risk.HIGH: "attention",
    Risk.CRITICAL: "attention",
}
"""The Adaptive Card text colour of each risk label (Teams has four: good, warning,
attention, accent; the label's mark tells high from critical)."""

_STATUS_STYLE = {
    Status.PENDING: ("Approval needed", "warning"),
    Status.APPROVED: ("Approved", "good"),
    Status.DENIED: ("Denied", "attention"),
    Status.EXPIRED: ("Expired", "default"),
    Status.CANCELLED: ("Cancelled", "default"),
}


def fit_and_tell(text: str, limit: int) -> tuple[str, bool]:
    """Untrusted ``text`` with invisible characters shown, at most ``limit`` characters,
    and whether it had to be cut."""
    return cut(reveal_invisible(text), limit)


def fit(text: str, limit: int) -> str:
    """:func:`fit_and_tell` without the flag."""
    return fit_and_tell(text, limit)[0]


def label(text: str, **style: Any) -> dict[str, Any]:
    """A ``TextBlock`` of the product's own words (never agent text: it renders Markdown)."""
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def run(text: str, **style: Any) -> dict[str, Any]:
    """A ``TextRun``: shown verbatim, no Markdown, no links, no mentions."""
    return {"type": "TextRun", "text": text, **style}


def rich(*runs: dict[str, Any], **style: Any) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": list(runs), **style}


def labelled(name: str, value: str, *, monospace: bool = False) -> dict[str, Any]:
    """``name: value`` on one line, the value verbatim."""
    value_style = {"fontType": "Monospace"} if monospace else {}
    return rich(run(f"{name}: ", weight="Bolder"), run(value or "-", **value_style))


def card_size(card: dict[str, Any]) -> int:
    """The JSON size Teams counts a card by, in bytes."""
    return len(json.dumps(card, ensure_ascii=False).encode())


def _execute(title: str, action: str, request_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "Action.Execute",
        "title": title,
        "verb": action,
        "data": {"action": action, "request": request_id},
        **extra,
    }


def buttons(card: ApprovalCard) -> list[dict[str, Any]]:
    """Approve, Deny, and Deny with a reason (a form), or Approve and Deny-with-a-reason
    alone when the policy needs a reason."""
    reason_box = {
        "type": "Input.Text",
        "id": REASON_INPUT,
        "label": "Reason" + ("" if card.require_reason else " (optional)"),
        "placeholder": "Why is this denied?",
        "isMultiline": True,
        "maxLength": REASON_LIMIT,
        "isRequired": card.require_reason,
        "errorMessage": "This request's policy needs a reason to deny.",
    }
    form = {
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": [reason_box],
        "actions": [
            _execute("Deny", DENY_WITH_REASON, card.request_id, style="destructive"),
        ],
    }
    approve = _execute("Approve", APPROVE, card.request_id, style="positive")
    # Time-boxed grants: approve, and the agent's same requests for that long. The length
    # rides in the action's data, a wish the core checks against the policy.
    approve_for = [
        {
            **_execute(f"Approve for {length_text(length)}", APPROVE, card.request_id),
            "data": {
                "action": APPROVE,
                "request": card.request_id,
                GRANT_SECONDS: int(length.total_seconds()),
            },
        }
        for length in card.approve_for
    ]
    with_reason = {
        "type": "Action.ShowCard",
        "title": "Deny…" if card.require_reason else "Deny with reason…",
        "card": form,
    }
    if card.require_reason:
        return [approve, *approve_for, with_reason]
    deny = _execute("Deny", DENY, card.request_id, style="destructive")
    return [approve, *approve_for, deny, with_reason]


def render_card(card: ApprovalCard, *, public_url: str) -> dict[str, Any]:
    """The Adaptive Card for ``card``: buttons only while the request is pending."""
    url = inbox_url(public_url, card.request_id)
    cut = Cuts(fit_and_tell)
    heading, colour = _STATUS_STYLE.get(card.status, ("Approval request", "default"))
    body: list[dict[str, Any]] = []
    # The policy's risk and describe line come first, before anything the agent wrote.
    if card.risk:
        body.append(label(risk_label(card.risk), weight="Bolder", color=_RISK_COLOURS[card.risk]))
    if card.summary:
        body.append(rich(run(cut(card.summary, SUMMARY_LIMIT), weight="Bolder", size="Medium")))
    body += [
        label(heading, weight="Bolder", color=colour, size="Medium"),
        rich(run(cut(card.title, TITLE_LIMIT), weight="Bolder", size="Large")),
    ]
    if card.details.strip():
        body.append(rich(run(cut(card.details, DETAILS_LIMIT))))
    body += [
        labelled("Agent", cut(card.agent, NAME_LIMIT)),
        labelled("Action", cut(card.action, NAME_LIMIT)),
    ]
    if card.requested_by:
        body.append(labelled("On behalf of", cut(card.requested_by, NAME_LIMIT)))
    body += [
        labelled("Policy", fit(card.policy, NAME_LIMIT)),
        labelled("Level", card.level_text),
        labelled("Deadline", f"{card.deadline:%Y-%m-%d %H:%M} UTC"),
        labelled("Payload SHA-256", card.short_hash, monospace=True),
    ]
    tail: list[dict[str, Any]] = []
    if card.note:
        tail.append(rich(run(fit(card.note, NOTE_LIMIT), italic=True)))
    tail.append(
        rich(
            run("Status: ", weight="Bolder"),
            run(card.status.value.capitalize(), weight="Bolder", color=colour),
            run(f": {fit(card.status_line, STATUS_LIMIT)}"),
            separator=True,
        )
    )
    tail.append(label(f"signoff request {card.request_id}", size="Small", isSubtle=True))
    actions = buttons(card) if card.buttons else []
    adaptive = _card(body, tail, actions)
    # Parameters go in while they fit the budget (with room for the inbox link).
    shown = 0
    params: list[dict[str, Any]] = []
    for field in card.fields[:MAX_PARAMS]:
        block = labelled(
            cut(field.label, NAME_LIMIT), cut(field.value, PARAM_VALUE_LIMIT), monospace=True
        )
        trial = _card([*body, *params, block], tail, actions)
        if card_size(trial) + 500 > CARD_BUDGET:
            break
        params.append(block)
        shown += 1
    hidden = len(card.fields) - shown
    link_title = inbox_link_text(hidden_params=hidden, cut=cut.any)
    if hidden or cut.any:
        params.append(label(f"{link_title}.", isSubtle=True))
    links = [_open_url(link_title, url)]
    if card.edit_link:
        # Action.OpenUrl: opens the request's inbox page, where edits are made; no decision.
        links.append(_open_url(EDIT_LINK_TEXT, url))
    adaptive = _card([*body, *params], tail, [*actions, *links])
    assert card_size(adaptive) <= CARD_BUDGET, card_size(adaptive)
    return adaptive


def render_confirmation(prompt: ConfirmPrompt) -> dict[str, Any]:
    """The card a person sees after Approve under a policy that needs confirming: the
    risk, the describe line, the title and the params, with Confirm approve (its data
    carries the person's confirmation token) and Cancel. Teams shows it to that person
    only, in place of the card."""
    card = prompt.card
    cut = Cuts(fit_and_tell)
    body: list[dict[str, Any]] = []
    if card.risk:
        body.append(label(risk_label(card.risk), weight="Bolder", color=_RISK_COLOURS[card.risk]))
    if card.summary:
        body.append(rich(run(cut(card.summary, SUMMARY_LIMIT), weight="Bolder", size="Medium")))
    body += [
        label("Confirm your approval", weight="Bolder", size="Medium"),
        rich(run(cut(card.title, TITLE_LIMIT), weight="Bolder", size="Large")),
    ]
    for field in card.fields[:MAX_PARAMS]:
        block = labelled(
            cut(field.label, NAME_LIMIT), cut(field.value, PARAM_VALUE_LIMIT), monospace=True
        )
        if card_size(_card([*body, block], [], [])) + 2000 > CARD_BUDGET:
            break
        body.append(block)
    body += [
        labelled("Payload SHA-256", card.short_hash, monospace=True),
        label(
            f"Policy {fit(card.policy, NAME_LIMIT)} needs each approval confirmed. Nothing is "
            "recorded until you press Confirm approve; it works for a few minutes.",
            isSubtle=True,
        ),
    ]
    actions = [
        _execute("Confirm approve", CONFIRM, card.request_id, style="positive"),
        _execute("Cancel", CANCEL, card.request_id),
    ]
    actions[0]["data"]["token"] = prompt.token
    adaptive = _card(body, [], actions)
    assert card_size(adaptive) <= CARD_BUDGET, card_size(adaptive)
    return adaptive


def _open_url(title: str, url: str) -> dict[str, Any]:
    return {"type": "Action.OpenUrl", "title": title, "url": url}


def _card(
    body: Iterable[dict[str, Any]], tail: Iterable[dict[str, Any]], actions: list[dict[str, Any]]
) -> dict[str, Any]:
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "msteams": {"width": "full"},
        "body": [*body, *tail],
    }
    if actions:
        card["actions"] = actions
    return card


def render_notice(text: str) -> dict[str, Any]:
    """A follow-up under a card (a reminder, an escalation) as a small card: message text
    would render Markdown."""
    return {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "body": [rich(run(fit(text, NOTICE_LIMIT)))],
    }


def notice_text(text: str) -> str:
    """A private answer to a click, as Teams shows it to the person who clicked."""
    return fit(text, NOTICE_LIMIT)
