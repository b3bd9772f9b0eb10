"""Discord rendering of cards, notices and the deny-reason modal: pure functions.

Agent text is untrusted. Every piece of it goes through :func:`fit`, which makes invisible
and direction-changing characters visible, escapes Discord markdown (so ``[good](http://evil)``
cannot mask a link, ``**`` cannot restyle the card), breaks mention syntax (``@everyone``,
``<@id>``, ``<@&role>``, ``<#channel>``) and cuts the text to a limit. The card's structure
(its fields and their names) is fixed here; agent text only ever fills values. Cut values
point to the web inbox, where the full request is shown. Mentions are also switched off at
the API level: every send and edit carries ``allowed_mentions`` that allow nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import discord
from discord.utils import escape_mentions

from adapters.discord.references import Verb, encode
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
from approvals.machine import Status
from approvals.text import reveal_invisible

# Discord's limits (https://discord.com/developers/docs/resources/message#embed-object).
MAX_CONTENT = 2000
"""A message's ``content``."""
MAX_EMBED_TITLE = 256
MAX_EMBED_DESCRIPTION = 4096
MAX_EMBED_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_FOOTER = 2048
MAX_EMBED_TOTAL = 6000
"""All of an embed's text together: title, description, field names and values, footer."""
MAX_BUTTON_LABEL = 80
MAX_BUTTONS_PER_ROW = 5
MAX_MODAL_TITLE = 45
MAX_LABEL_TEXT = 45
"""A modal label's text."""
MAX_TEXT_INPUT = 4000
"""A text input's ``max_length``."""

# Our own budgets, well inside Discord's, so a card stays readable and within the total.
TITLE_LIMIT = 200
SUMMARY_LIMIT = 300
DETAILS_LIMIT = 800
NAME_LIMIT = 200
"""Agent and action names."""
PARAM_LABEL_LIMIT = 60
PARAM_VALUE_LIMIT = 250
MAX_PARAM_FIELDS = 12
STATUS_LIMIT = 400
NOTE_LIMIT = 300
NOTICE_LIMIT = 1800
REASON_LIMIT = 2000
"""The longest deny reason the modal accepts (the core's own limit)."""

ELLIPSIS = "…"
REASON_INPUT = "reason"
"""``custom_id`` of the reason text input inside the modal."""

STATUS_COLOURS = {
    Status.PENDING: discord.Colour.gold(),
    Status.APPROVED: discord.Colour.green(),
    Status.DENIED: discord.Colour.red(),
    Status.EXPIRED: discord.Colour.dark_grey(),
    Status.CANCELLED: discord.Colour.light_grey(),
}


def visible(text: str) -> str:
    """``text`` with bidi controls and invisible characters shown as ``⟨U+XXXX⟩``."""
    return reveal_invisible(text)


_MARKDOWN = re.compile(r"([\\*_~`|>#\-\[\]()<])")
"""Characters that start Discord markdown, links, mentions or emoji: each gets a backslash."""


def escape(text: str) -> str:
    """Discord markdown and mention syntax in ``text`` made inert.

    ``escape_mentions`` puts a zero-width space after ``@`` in ``@everyone``, ``@here`` and
    ``<@id>``; then every markdown character gets a backslash (Discord, like CommonMark,
    shows an escaped punctuation character as itself), which also keeps ``[text](url)``
    from masking a link and ``<#channel>``, ``<@&role>`` or custom emoji from being parsed.
    """
    return _MARKDOWN.sub(r"\\\1", escape_mentions(text))


def fit_and_tell(text: str, limit: int) -> tuple[str, bool]:
    """Untrusted ``text`` made visible and inert, at most ``limit`` characters, and whether
    it had to be cut. A cut never leaves a dangling backslash."""
    escaped = escape(visible(text))
    if len(escaped) <= limit:
        return escaped, False
    kept = escaped[: limit - len(ELLIPSIS)]
    trailing = len(kept) - len(kept.rstrip("\\"))
    if trailing % 2:
        kept = kept[:-1]
    return kept + ELLIPSIS, True


def fit(text: str, limit: int) -> str:
    """:func:`fit_and_tell` without the flag."""
    return fit_and_tell(text, limit)[0]


@dataclass(frozen=True)
class Button:
    """One button: what it says, how it looks, and the reference it carries; or, for a
    link button, the URL it opens (Discord sends no interaction for those)."""

    label: str
    style: discord.ButtonStyle
    custom_id: str | None
    url: str | None = None


@dataclass(frozen=True)
class DiscordCard:
    """What a card message is made of: short ``content``, one embed, buttons (maybe none)."""

    content: str
    embed: discord.Embed
    buttons: tuple[Button, ...]


def action_buttons(card: ApprovalCard, *, public_url: str = "") -> tuple[Button, ...]:
    """Approve / Deny, plus "Deny with reason" where a reason is optional, and an "Edit in
    inbox" link button where the policy allows edits."""
    approve = Button("Approve", discord.ButtonStyle.success, encode(Verb.APPROVE, card.request_id))
    reason_id = encode(Verb.DENY_WITH_REASON, card.request_id)
    assert MAX_BUTTONS_PER_ROW >= 4
    buttons: tuple[Button, ...]
    if card.require_reason:
        # The policy wants a reason: Deny opens the reason modal.
        buttons = (approve, Button("Deny…", discord.ButtonStyle.danger, reason_id))
    else:
        buttons = (
            approve,
            Button("Deny", discord.ButtonStyle.danger, encode(Verb.DENY, card.request_id)),
            Button("Deny with reason…", discord.ButtonStyle.secondary, reason_id),
        )
    # Time-boxed grants: approve, and the agent's same requests for that long.
    buttons += tuple(
        Button(
            f"Approve for {length_text(length)}",
            discord.ButtonStyle.success,
            encode(Verb.APPROVE, card.request_id, grant_seconds=int(length.total_seconds())),
        )
        for length in card.approve_for
    )
    if card.edit_link and public_url:
        url = inbox_url(public_url, card.request_id)
        buttons += (Button(EDIT_LINK_TEXT, discord.ButtonStyle.link, None, url=url),)
    return buttons


def embed_length(embed: discord.Embed) -> int:
    """The text Discord counts against :data:`MAX_EMBED_TOTAL`."""
    return len(embed)


def render_card(card: ApprovalCard, *, public_url: str) -> DiscordCard:
    """The Discord message for ``card``: buttons only while the request is pending."""
    url = inbox_url(public_url, card.request_id)
    cut = Cuts(fit_and_tell)
    title = cut(card.title, TITLE_LIMIT)
    details = cut(card.details, DETAILS_LIMIT) if card.details.strip() else ""
    embed = discord.Embed(
        title=f"Approval request: {title}"[:MAX_EMBED_TITLE],
        url=url,
        colour=STATUS_COLOURS.get(card.status, discord.Colour.default()),
    )
    embed.add_field(name="Agent", value=cut(card.agent, NAME_LIMIT) or "-", inline=True)
    embed.add_field(name="Action", value=cut(card.action, NAME_LIMIT) or "-", inline=True)
    embed.add_field(name="Policy", value=fit(card.policy, NAME_LIMIT) or "-", inline=True)
    embed.add_field(name="Level", value=card.level_text, inline=True)
    deadline = int(card.deadline.timestamp())
    embed.add_field(
        name="Deadline",
        value=f"{card.deadline:%Y-%m-%d %H:%M} UTC (<t:{deadline}:R>)",
        inline=True,
    )
    embed.add_field(name="Payload SHA-256", value=f"`{card.short_hash}`", inline=True)
    # Fields after the parameters: status, and the note when there is one.
    status = f"**{card.status.value.capitalize()}**: {fit(card.status_line, STATUS_LIMIT)}"
    note = fit(card.note, NOTE_LIMIT) if card.note else None
    footer = f"signoff request {card.request_id}"
    first = card_headline(card, fit, SUMMARY_LIMIT)
    reserved = (
        (len(first) + 6 if first else 0)  # bold, and the blank line after it
        + len("Status")
        + len(status)
        + (len("Note") + len(note) if note else 0)
        + len(footer)
        + len(details)
        + 200  # the inbox link line
    )
    shown_params = 0
    for field in card.fields[:MAX_PARAM_FIELDS]:
        name = cut(field.label, PARAM_LABEL_LIMIT) or "-"
        value = cut(field.value, PARAM_VALUE_LIMIT) or "-"
        if embed_length(embed) + len(name) + len(value) + reserved > MAX_EMBED_TOTAL:
            break
        embed.add_field(name=name, value=value, inline=len(value) <= 40)
        shown_params += 1
    hidden = len(card.fields) - shown_params
    link = f"[{inbox_link_text(hidden_params=hidden, cut=cut.any)}]({url})"
    embed.description = "\n\n".join(
        part for part in (f"**{first}**" if first else "", details, link) if part
    )
    if note:
        embed.add_field(name="Note", value=note, inline=False)
    embed.add_field(name="Status", value=status, inline=False)
    embed.set_footer(text=footer[:MAX_FOOTER])
    assert len(embed.fields) <= MAX_EMBED_FIELDS
    assert embed_length(embed) <= MAX_EMBED_TOTAL, embed_length(embed)
    plain_title = fit(card.title, TITLE_LIMIT)
    if card.buttons:
        # What a notification shows: the policy's words first, when it has them.
        content = f"Approval needed: {first or plain_title}"
    else:
        content = f"{plain_title}: {fit(card.status_line, STATUS_LIMIT)}"
    return DiscordCard(
        content=content[:MAX_CONTENT],
        embed=embed,
        buttons=action_buttons(card, public_url=public_url) if card.buttons else (),
    )


def render_notice(text: str) -> str:
    """A short message to one person (ephemeral) or a reply under a card, made inert."""
    return fit(text, NOTICE_LIMIT)


MAX_TEXT_DISPLAY = 4000
"""A modal text display's content."""
CONFIRM_PARAMS_LIMIT = 2500
"""Room for the params on the confirmation modal, inside one text display."""


@dataclass(frozen=True)
class ConfirmModal:
    """The modal that asks the person to confirm an approval: its text shows the risk,
    the describe line, the title and the params; its submission is the approval."""

    custom_id: str
    title: str
    text: str


def confirm_modal(prompt: ConfirmPrompt) -> ConfirmModal:
    """The confirmation modal of ``prompt``; its ``custom_id`` carries the token.

    Raises:
        ValueError: the reference does not fit a ``custom_id`` (an unusually long id).
    """
    card = prompt.card
    cut = Cuts(fit_and_tell)
    lines = []
    first = card_headline(card, fit, SUMMARY_LIMIT)
    if first:
        lines.append(f"**{first}**")
    lines.append(f"Approve {cut(card.title, TITLE_LIMIT)}?")
    params = "\n".join(
        f"{cut(field.label, PARAM_LABEL_LIMIT)}: {cut(field.value, PARAM_VALUE_LIMIT)}"
        for field in card.fields[:MAX_PARAM_FIELDS]
    )
    if params:
        lines.append(f"**Params**\n{params[:CONFIRM_PARAMS_LIMIT]}")
    hidden = len(card.fields) - MAX_PARAM_FIELDS
    if hidden > 0 or cut.any:
        lines.append(inbox_link_text(hidden_params=max(hidden, 0), cut=cut.any))
    lines.append(
        f"Payload SHA-256 `{card.short_hash}`. Policy {fit(card.policy, NAME_LIMIT)} needs "
        "each approval confirmed: submitting this form approves."
    )
    return ConfirmModal(
        custom_id=encode(Verb.CONFIRM_SUBMITTED, prompt.request_id, token=prompt.token),
        title="Confirm approval",
        text="\n\n".join(lines)[:MAX_TEXT_DISPLAY],
    )


@dataclass(frozen=True)
class ReasonModal:
    """The modal that asks why a request is denied."""

    custom_id: str
    title: str
    label: str
    description: str | None
    required: bool


def reason_modal(request_id: str, *, require_reason: bool) -> ReasonModal:
    """The deny-reason modal for ``request_id``; its submission carries the reference."""
    assert REASON_LIMIT <= MAX_TEXT_INPUT
    return ReasonModal(
        custom_id=encode(Verb.REASON_SUBMITTED, request_id),
        title="Deny request",
        label="Reason",
        description="This request's policy needs a reason to deny." if require_reason else None,
        required=require_reason,
    )
