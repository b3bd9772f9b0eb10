"""Block Kit rendering of cards, notices, the deny-reason modal and the approval's
confirmation modal: pure functions.

Agent text is untrusted. Every piece of it goes through :func:`fit`, which makes invisible
and direction-changing characters visible, escapes ``&``, ``<`` and ``>`` (so ``<!channel>``,
``<@U1>`` or ``<http://evil|good>`` show as text instead of pinging or linking) and cuts it
to a limit. Cut values point to the web inbox, where the full request is shown.

Slack has no escape for its mrkdwn formatting characters (``*``, ``_``, ``~``, backticks,
a leading ``>``), so on a card agent text (and a decider's reason) is only ever put in
``plain_text`` objects, which Slack shows literally: a title cannot make bold text, fake a
code block or strike out a word. ``mrkdwn`` carries only what signoff writes itself: the
inbox link and notes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from adapters.slack.references import encode_grant_value, encode_value
from approvals.card import (
    EDIT_LINK_TEXT,
    ApprovalCard,
    Cuts,
    card_headline,
    inbox_link_text,
    inbox_url,
)
from approvals.clicks import ConfirmPrompt
from approvals.grants import length_text
from approvals.text import reveal_invisible

# Slack's limits (https://docs.slack.dev/reference/block-kit).
MAX_BLOCKS = 50
"""Blocks in one message."""
MAX_MESSAGE_TEXT = 4000
"""The top-level ``text`` in practice (Slack truncates far later, but clients cope badly)."""
MAX_HEADER_TEXT = 150
"""A header block's text."""
MAX_SECTION_TEXT = 3000
"""A section block's text."""
MAX_FIELD_TEXT = 2000
"""One section field's text."""
MAX_FIELDS_PER_SECTION = 10
"""Fields in one section block."""
MAX_CONTEXT_ELEMENTS = 10
"""Elements in one context block."""
MAX_BUTTON_TEXT = 75
"""A button's label."""
MAX_MODAL_TITLE = 24
"""A modal's title, submit and close labels."""
MAX_PRIVATE_METADATA = 3000
"""A view's ``private_metadata``."""
MAX_INPUT_LENGTH = 3000
"""A plain-text input's ``max_length``."""

# Our own budgets, well inside Slack's, so a card stays readable.
TITLE_LIMIT = 300
SUMMARY_LIMIT = 300
DETAILS_LIMIT = 1500
PARAM_LABEL_LIMIT = 100
PARAM_VALUE_LIMIT = 300
MAX_PARAM_FIELDS = 2 * MAX_FIELDS_PER_SECTION
STATUS_LIMIT = 1500
NOTE_LIMIT = 500
NOTICE_LIMIT = 2000
REASON_LIMIT = 2000
"""The longest deny reason the modal accepts (the core's own limit)."""

ELLIPSIS = "…"

APPROVE_ACTION = "signoff_approve"
APPROVE_FOR_ACTION = "signoff_approve_for"
"""The "Approve for ..." select of a policy with time-boxed grants."""
APPROVE_FOR_TEXT = "Approve for…"
DENY_ACTION = "signoff_deny"
EDIT_LINK_ACTION = "signoff_edit_link"
"""The "Edit in inbox" URL button's action: Slack reports its clicks too; they decide
nothing and are only acknowledged."""
DENY_WITH_REASON_ACTION = "signoff_deny_reason"
ACTIONS_BLOCK = "signoff_actions"
REASON_VIEW = "signoff_deny_reason"
CONFIRM_VIEW = "signoff_confirm_approve"
"""The confirmation modal of an approval under a policy that needs confirming."""
"""``callback_id`` of the deny-reason modal."""
REASON_BLOCK = "reason"
REASON_INPUT = "reason"

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def visible(text: str) -> str:
    """``text`` with bidi controls and invisible characters shown as ``⟨U+XXXX⟩``."""
    return reveal_invisible(text)


def escape(text: str) -> str:
    """Slack's escaping for message text: ``&``, ``<`` and ``>`` become entities."""
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def fit(text: str, limit: int) -> str:
    """Untrusted ``text`` made safe for mrkdwn: visible, escaped, at most ``limit`` characters.

    A cut is marked with an ellipsis and never splits an entity such as ``&lt;``.
    """
    return fit_and_tell(text, limit)[0]


def fit_and_tell(text: str, limit: int) -> tuple[str, bool]:
    """:func:`fit`, and whether ``text`` had to be cut."""
    pieces = [_ESCAPES.get(ch, ch) for ch in visible(text)]
    if sum(len(piece) for piece in pieces) <= limit:
        return "".join(pieces), False
    budget = limit - len(ELLIPSIS)
    kept: list[str] = []
    used = 0
    for piece in pieces:
        if used + len(piece) > budget:
            break
        kept.append(piece)
        used += len(piece)
    return "".join(kept) + ELLIPSIS, True


@dataclass(frozen=True)
class SlackMessage:
    """What ``chat.postMessage`` / ``chat.update`` get: fallback text and blocks."""

    text: str
    blocks: list[dict[str, Any]]


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _literal(text: str) -> dict[str, Any]:
    """``plain_text`` shown exactly as written: no formatting, no ``:emoji:`` codes."""
    return {"type": "plain_text", "text": text, "emoji": False}


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": _plain(text[:MAX_BUTTON_TEXT]),
        "action_id": action_id,
        "value": value,
    }
    if style is not None:
        button["style"] = style
    return button


def _approve_for(card: ApprovalCard) -> dict[str, Any]:
    """A select next to Approve: approve, and the same requests for that long."""
    options = [
        {
            "text": _plain(f"Approve for {length_text(length)}"),
            "value": encode_grant_value(card.request_id, int(length.total_seconds())),
        }
        for length in card.approve_for
    ]
    return {
        "type": "static_select",
        "action_id": APPROVE_FOR_ACTION,
        "placeholder": _plain(APPROVE_FOR_TEXT),
        "options": options,
    }


def action_buttons(card: ApprovalCard, *, public_url: str = "") -> dict[str, Any]:
    """Approve / Deny, plus "Deny with reason" where a reason is optional, and "Edit in
    inbox" (a link to the request's page) where the policy allows edits."""
    value = encode_value(card.request_id)
    buttons = [_button("Approve", APPROVE_ACTION, value, "primary")]
    if card.approve_for:
        buttons.append(_approve_for(card))
    if card.require_reason:
        # The policy wants a reason: Deny opens the reason modal.
        buttons.append(_button("Deny…", DENY_WITH_REASON_ACTION, value, "danger"))
    else:
        buttons.append(_button("Deny", DENY_ACTION, value, "danger"))
        buttons.append(_button("Deny with reason…", DENY_WITH_REASON_ACTION, value))
    if card.edit_link and public_url:
        link = _button(EDIT_LINK_TEXT, EDIT_LINK_ACTION, value)
        link["url"] = inbox_url(public_url, card.request_id)
        buttons.append(link)
    return {"type": "actions", "block_id": ACTIONS_BLOCK, "elements": buttons}


def render_card(card: ApprovalCard, *, public_url: str) -> SlackMessage:
    """The Slack message for ``card``: buttons only while the request is pending."""
    url = inbox_url(public_url, card.request_id)
    cut = Cuts(fit_and_tell)
    title = cut(card.title, TITLE_LIMIT)
    first = card_headline(card, fit, SUMMARY_LIMIT)
    blocks: list[dict[str, Any]] = []
    if first:
        # A header block is what Slack shows largest, but it holds only 150 characters.
        kind = "header" if len(first) <= MAX_HEADER_TEXT else "section"
        blocks.append({"type": kind, "text": _literal(first)})
    blocks += [
        {"type": "section", "text": _literal(f"Approval request: {title}")},
        {
            "type": "section",
            "fields": [
                _literal(f"Agent: {cut(card.agent, PARAM_VALUE_LIMIT)}"),
                _literal(f"Action: {cut(card.action, PARAM_VALUE_LIMIT)}"),
                _literal(f"Policy: {fit(card.policy, PARAM_VALUE_LIMIT)}"),
                _literal(f"Level: {card.level_text}"),
                _literal(f"Deadline: {card.deadline:%Y-%m-%d %H:%M} UTC"),
                _literal(f"Payload SHA-256: {card.short_hash}"),
            ],
        },
    ]
    if card.details.strip():
        blocks.append({"type": "section", "text": _literal(cut(card.details, DETAILS_LIMIT))})
    fields = [
        _literal(f"{cut(field.label, PARAM_LABEL_LIMIT)}: {cut(field.value, PARAM_VALUE_LIMIT)}")
        for field in card.fields[:MAX_PARAM_FIELDS]
    ]
    for start in range(0, len(fields), MAX_FIELDS_PER_SECTION):
        blocks.append({"type": "section", "fields": fields[start : start + MAX_FIELDS_PER_SECTION]})
    hidden = len(card.fields) - MAX_PARAM_FIELDS
    link = f"<{url}|{inbox_link_text(hidden_params=hidden, cut=cut.any)}>"
    blocks.append({"type": "context", "elements": [_mrkdwn(link)]})
    if card.note:
        blocks.append({"type": "context", "elements": [_literal(fit(card.note, NOTE_LIMIT))]})
    blocks.append(
        {"type": "section", "text": _literal(f"Status: {fit(card.status_line, STATUS_LIMIT)}")}
    )
    if card.buttons:
        blocks.append(action_buttons(card, public_url=public_url))
    assert len(blocks) <= MAX_BLOCKS
    if card.buttons:
        # The notification's text: what a phone shows before the card is opened.
        text = f"Approval needed: {first or fit(card.title, TITLE_LIMIT)}"
    else:
        text = f"{fit(card.title, TITLE_LIMIT)}: {fit(card.status_line, STATUS_LIMIT)}"
    return SlackMessage(text=text[:MAX_MESSAGE_TEXT], blocks=blocks)


def render_notice(text: str) -> str:
    """A short message to one person (ephemeral) or a thread reply, escaped."""
    return fit(text, NOTICE_LIMIT)


def reason_modal(card_title: str, *, private_metadata: str, require_reason: bool) -> dict[str, Any]:
    """The modal that asks why a request is denied."""
    if len(private_metadata) > MAX_PRIVATE_METADATA:
        raise ValueError("private_metadata is longer than Slack allows")
    hint = "A reason is required by this request's policy." if require_reason else ""
    return {
        "type": "modal",
        "callback_id": REASON_VIEW,
        "private_metadata": private_metadata,
        "title": _plain("Deny request"),
        "submit": _plain("Deny"),
        "close": _plain("Cancel"),
        "blocks": [
            {
                "type": "section",
                "text": _literal(f"Deny {fit(card_title, TITLE_LIMIT)}? {hint}".strip()),
            },
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "optional": not require_reason,
                "label": _plain("Reason"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_INPUT,
                    "multiline": True,
                    "max_length": REASON_LIMIT,
                },
            },
        ],
    }


def confirm_modal(prompt: ConfirmPrompt, *, private_metadata: str) -> dict[str, Any]:
    """The modal that asks the person to confirm an approval: the risk label and describe
    line first, then the title and the params being approved (agent text in plain text
    only, as on the card); its submit button is the approval."""
    if len(private_metadata) > MAX_PRIVATE_METADATA:
        raise ValueError("private_metadata is longer than Slack allows")
    card = prompt.card
    cut = Cuts(fit_and_tell)
    blocks: list[dict[str, Any]] = []
    first = card_headline(card, fit, SUMMARY_LIMIT)
    if first:
        blocks.append({"type": "section", "text": _literal(first)})
    blocks.append({"type": "section", "text": _literal(f"Approve {cut(card.title, TITLE_LIMIT)}?")})
    fields = [
        _literal(f"{cut(field.label, PARAM_LABEL_LIMIT)}: {cut(field.value, PARAM_VALUE_LIMIT)}")
        for field in card.fields[:MAX_PARAM_FIELDS]
    ]
    for start in range(0, len(fields), MAX_FIELDS_PER_SECTION):
        blocks.append({"type": "section", "fields": fields[start : start + MAX_FIELDS_PER_SECTION]})
    hidden = len(card.fields) - MAX_PARAM_FIELDS
    if hidden > 0 or cut.any:
        more = inbox_link_text(hidden_params=hidden, cut=cut.any)
        blocks.append({"type": "context", "elements": [_literal(more)]})
    blocks.append(
        {
            "type": "context",
            "elements": [
                _literal(
                    f"Policy {fit(card.policy, PARAM_VALUE_LIMIT)} needs each approval "
                    f"confirmed. Payload SHA-256: {card.short_hash}"
                )
            ],
        }
    )
    return {
        "type": "modal",
        "callback_id": CONFIRM_VIEW,
        "private_metadata": private_metadata,
        "title": _plain("Confirm approval"),
        "submit": _plain("Confirm approve"),
        "close": _plain("Cancel"),
        "blocks": blocks,
    }


def metadata(value: str, channel: str, ts: str, confirm_token: str | None = None) -> str:
    """``private_metadata`` for a modal: which card the click came from, and for the
    confirmation modal the confirmation token it carries."""
    data = {"value": value, "channel": channel, "ts": ts}
    if confirm_token is not None:
        data["confirm"] = confirm_token
    return json.dumps(data, separators=(",", ":"))


def confirm_token_in(text: object) -> str | None:
    """The confirmation token in a modal's ``private_metadata``, if it has one."""
    if not isinstance(text, str) or len(text) > MAX_PRIVATE_METADATA:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    token = data.get("confirm") if isinstance(data, dict) else None
    return token if isinstance(token, str) else None


def parse_metadata(text: object) -> tuple[str, str, str] | None:
    """``(value, channel, ts)`` from :func:`metadata`, or ``None`` when it is not ours."""
    if not isinstance(text, str) or len(text) > MAX_PRIVATE_METADATA:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    parts = (data.get("value"), data.get("channel"), data.get("ts"))
    if not all(isinstance(part, str) and part for part in parts):
        return None
    return str(parts[0]), str(parts[1]), str(parts[2])
