"""Pure rendering: approval cards as Telegram HTML messages, and outcomes as toast texts.

Agent text is untrusted. It is HTML-escaped and always placed inside ``<code>`` or ``<pre>``,
where Telegram neither parses markup nor turns ``@names``, URLs or ``#tags`` into entities;
bidi controls and invisible characters are shown as visible markers. Message lengths are
counted as Telegram counts them: UTF-16 code units of the text after entity parsing.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from adapters.telegram.callbacks import ButtonAction, ButtonRef, encode_button
from approvals.card import EDIT_LINK_TEXT, ApprovalCard, inbox_link_text, inbox_url, risk_label
from approvals.clicks import ClickOutcome, ConfirmPrompt, click_notice
from approvals.grants import length_text
from approvals.machine import Status
from approvals.outcomes import Applied
from approvals.text import reveal_invisible

MAX_MESSAGE_LENGTH = 4096
"""Telegram's limit on a message's text after entity parsing, in UTF-16 code units."""
MAX_TOAST_LENGTH = 200
"""Telegram's limit on an ``answerCallbackQuery`` text."""

TITLE_LIMIT = 256
SUMMARY_LIMIT = 300
NAME_LIMIT = 128
"""Agent, action, policy and param names."""
DETAILS_LIMIT = 1024
NOTE_LIMIT = 400
STATUS_LIMIT = 700
ELLIPSIS = "…"
PARAMS_TRUNCATED = "Params truncated: the web inbox shows them in full."

_HEADERS = {
    Status.PENDING: "🔐 Approval needed",
    Status.APPROVED: "✅ Approved",
    Status.DENIED: "⛔ Denied",
    Status.EXPIRED: "⌛ Expired",
    Status.CANCELLED: "🚫 Cancelled",
}


def visible(text: str) -> str:
    """``text`` with bidi controls and invisible characters shown as ``⟨U+XXXX⟩``."""
    return reveal_invisible(text)


def utf16_length(text: str) -> int:
    """Length as Telegram counts it (characters outside the BMP count twice)."""
    return len(text.encode("utf-16-le")) // 2


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-16 units, ending in an ellipsis when cut.

    Cuts between code points, so an emoji is never split into a lone surrogate.
    """
    if utf16_length(text) <= limit:
        return text
    budget = max(limit - 1, 0)
    used = 0
    for index, char in enumerate(text):
        width = 2 if ord(char) > 0xFFFF else 1
        if used + width > budget:
            return text[:index] + ELLIPSIS
        used += width
    return text  # pragma: no cover - the length check above returned already


@dataclass(frozen=True)
class RenderedCard:
    """A card as Telegram message parameters."""

    text: str
    keyboard: InlineKeyboardMarkup | None
    length: int
    """The text's length after entity parsing, in UTF-16 units."""


class _Message:
    """HTML under construction, with the length Telegram will count."""

    def __init__(self) -> None:
        self._html: list[str] = []
        self.length = 0

    def text(self, raw: str, tag: str | None = None) -> None:
        escaped = html.escape(raw, quote=False)
        self._html.append(f"<{tag}>{escaped}</{tag}>" if tag else escaped)
        self.length += utf16_length(raw)

    def link(self, raw: str, url: str) -> None:
        self._html.append(f'<a href="{html.escape(url, quote=True)}">{html.escape(raw)}</a>')
        self.length += utf16_length(raw)

    def html(self) -> str:
        return "".join(self._html)


def _untrusted(text: str, limit: int) -> str:
    return truncate(visible(text), limit)


def _compose(card: ApprovalCard, public_url: str, params: str, params_cut: bool) -> _Message:
    message = _Message()
    # What the policy says the request is and how risky, before anything the agent wrote.
    if card.risk:
        message.text(risk_label(card.risk), "b")
        message.text(" · " if card.summary else "\n")
    if card.summary:
        message.text(_untrusted(card.summary, SUMMARY_LIMIT), "b")
        message.text("\n")
    message.text(_HEADERS.get(card.status, card.status.value), "b")
    message.text("\n")
    message.text(_untrusted(card.title, TITLE_LIMIT) or "(untitled)", "code")
    message.text("\n\n")
    message.text("Agent: ", "b")
    message.text(_untrusted(card.agent, NAME_LIMIT), "code")
    message.text("\n")
    message.text("Action: ", "b")
    message.text(_untrusted(card.action, NAME_LIMIT), "code")
    message.text("\n")
    if card.details.strip():
        message.text(_untrusted(card.details, DETAILS_LIMIT), "pre")
        message.text("\n")
    if params:
        message.text("Params", "b")
        message.text("\n")
        message.text(params, "pre")
        message.text("\n")
        if params_cut:
            message.text(PARAMS_TRUNCATED, "i")
            message.text("\n")
    message.text("Payload: ", "b")
    message.text(card.short_hash, "code")
    message.text(" · ")
    message.text("Policy: ", "b")
    message.text(_untrusted(card.policy, NAME_LIMIT), "code")
    message.text(f" · level {card.level_text}\n")
    message.text("Deadline: ", "b")
    message.text(f"{card.deadline:%Y-%m-%d %H:%M} UTC\n")
    if card.note:
        message.text(_untrusted(card.note, NOTE_LIMIT), "i")
        message.text("\n")
    message.text("Status: ", "b")
    message.text(_untrusted(card.status_line, STATUS_LIMIT), "code")
    message.text("\n")
    message.link(inbox_link_text(cut=params_cut), inbox_url(public_url, card.request_id))
    if card.edit_link and not edit_button_allowed(public_url):
        message.text(" · ")
        message.link(EDIT_LINK_TEXT, inbox_url(public_url, card.request_id))
    return message


def _params_text(card: ApprovalCard) -> str:
    lines = [
        f"{truncate(visible(field.label), NAME_LIMIT)}: {visible(field.value)}"
        for field in card.fields
    ]
    return "\n".join(lines)


def edit_button_allowed(public_url: str) -> bool:
    """Whether "Edit in inbox" can be a URL button: Telegram refuses buttons that open
    local or plain-HTTP addresses, so a card served from such a URL says it as a link in
    the text instead."""
    return public_url.startswith("https://")


def keyboard_for(card: ApprovalCard, public_url: str = "") -> InlineKeyboardMarkup | None:
    """Approve / Deny buttons while the request is pending; none once it is final.

    When the policy needs a reason to deny, the plain Deny button is left out. Where the
    policy allows edits, an "Edit in inbox" URL button opens the request's inbox page.
    """
    if not card.buttons:
        return None
    try:
        approve = encode_button(ButtonRef(ButtonAction.APPROVE, card.request_id))
        deny = encode_button(ButtonRef(ButtonAction.DENY, card.request_id))
        with_reason = encode_button(ButtonRef(ButtonAction.DENY_WITH_REASON, card.request_id))
    except ValueError:
        return None  # an id too long for a button: the web inbox link still works
    if card.require_reason:
        rows = [
            [
                InlineKeyboardButton("✅ Approve", callback_data=approve),
                InlineKeyboardButton("⛔ Deny with reason", callback_data=with_reason),
            ]
        ]
    else:
        rows = [
            [
                InlineKeyboardButton("✅ Approve", callback_data=approve),
                InlineKeyboardButton("⛔ Deny", callback_data=deny),
            ],
            [InlineKeyboardButton("💬 Deny with reason", callback_data=with_reason)],
        ]
    approve_for = _approve_for_row(card)
    if approve_for:
        rows.append(approve_for)
    if card.edit_link and edit_button_allowed(public_url):
        url = inbox_url(public_url, card.request_id)
        rows.append([InlineKeyboardButton(f"✏️ {EDIT_LINK_TEXT}", url=url)])
    return InlineKeyboardMarkup(rows)


def _approve_for_row(card: ApprovalCard) -> list[InlineKeyboardButton]:
    """Time-boxed grants: approve, and the agent's same requests for that long (a length
    whose reference would not fit in a button is left out)."""
    row = []
    for length in card.approve_for:
        ref = ButtonRef(
            ButtonAction.APPROVE, card.request_id, grant_seconds=int(length.total_seconds())
        )
        try:
            data = encode_button(ref)
        except ValueError:
            continue
        row.append(InlineKeyboardButton(f"✅ for {length_text(length)}", callback_data=data))
    return row


def render_card(card: ApprovalCard, public_url: str) -> RenderedCard:
    """The card as one HTML message of at most :data:`MAX_MESSAGE_LENGTH` units.

    Params take whatever room the rest leaves; when they do not fit they are cut and the
    message says so (the link to the web inbox is always there).
    """
    params = _params_text(card)
    message = _compose(card, public_url, params, params_cut=False)
    if message.length > MAX_MESSAGE_LENGTH:
        without = _compose(card, public_url, "", params_cut=False).length
        # Room for the params block: its heading, newlines and the "truncated" line, and
        # for the longer link text of a card that was cut.
        longer_link = utf16_length(inbox_link_text(cut=True)) - utf16_length(inbox_link_text())
        overhead = utf16_length("Params\n\n" + PARAMS_TRUNCATED + "\n") + max(longer_link, 0)
        budget = max(MAX_MESSAGE_LENGTH - without - overhead, 1)
        message = _compose(card, public_url, truncate(params, budget), params_cut=True)
    assert message.length <= MAX_MESSAGE_LENGTH, "a card must fit in one Telegram message"
    return RenderedCard(
        text=message.html(), keyboard=keyboard_for(card, public_url), length=message.length
    )


def render_notice(text: str) -> str:
    """A plain notice from the core (a reminder) as escaped HTML."""
    return html.escape(truncate(visible(text), MAX_MESSAGE_LENGTH), quote=False)


def reason_prompt(user_id: int, name: str) -> str:
    """The ForceReply prompt asking one person for a reason (mentioning them by id)."""
    who = html.escape(truncate(visible(name), NAME_LIMIT) or "you", quote=False)
    return (
        f'<a href="tg://user?id={user_id}">{who}</a>, why deny? '
        "Reply to this message with your reason."
    )


def late_answer(user_id: int, name: str, text: str) -> str:
    """The outcome of a click whose spinner was already stopped, as a reply to the card
    that mentions the person by id (a toast can only be shown once, and only at once)."""
    who = html.escape(truncate(visible(name), NAME_LIMIT) or "you", quote=False)
    return f'<a href="tg://user?id={user_id}">{who}</a>: {render_notice(text)}'


CONFIRM_PARAMS_LIMIT = 3000
"""Room for the params on a confirmation, well inside one message."""


def render_confirmation(
    user_id: int, name: str, prompt: ConfirmPrompt, public_url: str
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The second step of an approval under a policy that needs confirming: a message
    mentioning the person who pressed Approve that shows the risk, the describe line, the
    title and the params, with Confirm approve (carrying their confirmation token) and
    Cancel. No buttons when the references would not fit Telegram's 64 bytes: the message
    then points to the web inbox."""
    card = prompt.card
    who = html.escape(truncate(visible(name), NAME_LIMIT) or "you", quote=False)
    message = _Message()
    if card.risk:
        message.text(risk_label(card.risk), "b")
        message.text(" · " if card.summary else "\n")
    if card.summary:
        message.text(_untrusted(card.summary, SUMMARY_LIMIT), "b")
        message.text("\n")
    message.text("Approve ")
    message.text(_untrusted(card.title, TITLE_LIMIT) or "(untitled)", "code")
    message.text("?\n")
    params = _params_text(card)
    if params:
        message.text("Params", "b")
        message.text("\n")
        message.text(truncate(params, CONFIRM_PARAMS_LIMIT), "pre")
        message.text("\n")
    message.text("Payload: ", "b")
    message.text(card.short_hash, "code")
    message.text("\n")
    message.text(
        f"Policy {truncate(visible(card.policy), NAME_LIMIT)} needs each approval confirmed. "
        "Nothing is recorded until you press Confirm approve (it works for a few minutes)."
    )
    try:
        confirm = encode_button(ButtonRef(ButtonAction.CONFIRM, prompt.request_id, prompt.token))
        cancel = encode_button(ButtonRef(ButtonAction.CANCEL, prompt.request_id, str(user_id)))
    except ValueError:
        message.text("\n")
        message.link("Approve it in the signoff inbox", inbox_url(public_url, card.request_id))
        keyboard = None
    else:
        keyboard = InlineKeyboardMarkup(
            [
                [InlineKeyboardButton("✅ Confirm approve", callback_data=confirm)],
                [InlineKeyboardButton("✖️ Cancel", callback_data=cancel)],
            ]
        )
    text = f'<a href="tg://user?id={user_id}">{who}</a>, confirm your approval:\n{message.html()}'
    return text, keyboard


def confirmation_closed(user_id: int, name: str, what: str) -> str:
    """What a confirmation message becomes once it is used or cancelled (no buttons)."""
    who = html.escape(truncate(visible(name), NAME_LIMIT) or "you", quote=False)
    return f'<a href="tg://user?id={user_id}">{who}</a>: {render_notice(what)}'


ASK_REASON = "Reply to my message with your reason"
CONFIRM_SHOWN = "Check the params, then press Confirm approve"
WORKING = "Received: counting your vote…"
FAILED = "Something went wrong; please try again"


def outcome_text(outcome: ClickOutcome) -> str:
    """The toast answering a click: the core's notice (why a click was not counted, how
    far a quorum is), or, when the click decided the request, what it decided."""
    notice = click_notice(outcome)
    if notice is None:
        decided = outcome.request.status if isinstance(outcome, Applied) else None
        notice = "Approved" if decided is Status.APPROVED else "Denied"
    return truncate(notice, MAX_TOAST_LENGTH)
