"""Approval cards as email: a multipart text + HTML message, pure functions only.

Agent text is untrusted. In the HTML part it is escaped (``html.escape(..., quote=True)``)
and never placed in an attribute; in the Subject it is stripped of line breaks and control
characters and cut short. Everywhere it is defanged (:func:`defang`) so that mail clients,
which turn URL-looking text into links on their own, do not make an agent's text
clickable. The only links in a message are signoff's own: the Approve / Deny links and the
inbox link, built from the public URL and the request id.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from approvals.card import (
    EDIT_LINK_TEXT,
    ApprovalCard,
    Cuts,
    card_headline,
    inbox_link_text,
    inbox_url,
)
from approvals.policy import Risk
from approvals.text import cut, reveal_invisible

SUBJECT_TITLE_LIMIT = 100
"""Characters of the title in the Subject; long subjects are folded and cut by clients."""
TITLE_LIMIT = 300
SUMMARY_LIMIT = 300
NAME_LIMIT = 200
DETAILS_LIMIT = 4000
NOTE_LIMIT = 600
FIELD_LABEL_LIMIT = 100
FIELD_VALUE_LIMIT = 600
MAX_FIELDS = 25
"""Parameters shown in a message; the rest are in the inbox, which the message links to."""
SUBJECT_PREFIX = "[signoff] "

_LINE_BREAKS_AND_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SCHEME = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]{1,31}):(//)")
_WWW = re.compile(r"\b(www)\.", re.IGNORECASE)
_ADDRESS_AT = re.compile(r"(?<=[A-Za-z0-9._%+-])@(?=[A-Za-z0-9-]+\.)")
_HOSTNAME = re.compile(
    r"\b((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+)"
    r"(com|net|org|io|co|dev|app|info|biz|ai|me|xyz|ru|cn|de|uk|us|fr|nl|eu|gov|edu)\b",
    re.IGNORECASE,
)


def defang(text: str) -> str:
    """URL-looking agent text made unclickable in every mail client.

    Clients link text on their own (``https://…``, ``www.…``, ``name@host``, and bare host
    names with common endings), so an agent could put a convincing link next to the
    Approve button. The usual defanging of threat reports breaks each pattern while
    keeping it readable: ``https://`` becomes ``https[:]//``, ``www.`` becomes
    ``www[.]``, ``@`` in an address becomes ``[@]`` and the last dot of a host name
    becomes ``[.]``.
    """
    text = _SCHEME.sub(r"\1[:]\2", text)
    text = _WWW.sub(r"\1[.]", text)
    text = _ADDRESS_AT.sub("[@]", text)
    return _HOSTNAME.sub(lambda match: f"{match.group(1)[:-1]}[.]{match.group(2)}", text)


def _fit(text: str, limit: int) -> tuple[str, bool]:
    """Untrusted text shown honestly (invisible characters revealed), defanged, cut."""
    return cut(defang(reveal_invisible(text)), limit)


def header_text(text: str, limit: int) -> str:
    """Agent text fit for a header: one line, no control characters, at most ``limit``."""
    one_line = " ".join(_LINE_BREAKS_AND_CONTROLS.sub(" ", text).split())
    shown, _ = _fit(one_line, limit)
    return shown


def subject_for(card: ApprovalCard) -> str:
    """The Subject of every message about the request (one thread, one Subject)."""
    return SUBJECT_PREFIX + "Approval needed: " + header_text(card.title, SUBJECT_TITLE_LIMIT)


@dataclass(frozen=True)
class DecisionUrls:
    """The Approve and Deny links of one recipient."""

    approve: str
    deny: str


@dataclass(frozen=True)
class RenderedMail:
    """The two bodies of one message."""

    text: str
    html: str


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def render_card(
    card: ApprovalCard,
    *,
    public_url: str,
    urls: DecisionUrls | None,
    intro: str | None = None,
) -> RenderedMail:
    """A card as text and HTML.

    Args:
        card: the card as it stands.
        public_url: signoff's public URL, for the inbox link.
        urls: this recipient's Approve / Deny links; ``None`` for a mailing list or a
            decided request (the message then has only the inbox link).
        intro: what this message is, above the card ("Reminder: ..."); signoff's own text.
    """
    cuts = Cuts(_fit)
    title = cuts(card.title, TITLE_LIMIT)
    facts: list[tuple[str, str]] = [
        ("Agent", cuts(card.agent, NAME_LIMIT)),
        ("Action", cuts(card.action, NAME_LIMIT)),
    ]
    if card.requested_by:
        facts.append(("On behalf of", cuts(card.requested_by, NAME_LIMIT)))
    facts += [
        ("Deadline", _when(card.deadline)),
        ("Level", card.level_text),
        ("Policy", cuts(card.policy, NAME_LIMIT)),
        ("Payload SHA-256", card.short_hash),
    ]
    if card.note:
        facts.append(("Note", cuts(card.note, NOTE_LIMIT)))
    details = cuts(card.details, DETAILS_LIMIT) if card.details else ""
    shown_fields = card.fields[:MAX_FIELDS]
    params = [
        (cuts(field.label, FIELD_LABEL_LIMIT), cuts(field.value, FIELD_VALUE_LIMIT))
        for field in shown_fields
    ]
    hidden = len(card.fields) - len(shown_fields)
    status = cuts(card.status_line, NOTE_LIMIT)
    inbox = inbox_url(public_url, card.request_id)
    shown = _Shown(
        intro=intro,
        lead=card_headline(card, cuts, SUMMARY_LIMIT) or "",
        risk=card.risk,
        title=title,
        status=status,
        facts=facts,
        details=details,
        params=params,
        urls=urls,
        inbox=inbox,
        inbox_text=inbox_link_text(hidden_params=hidden, cut=cuts.any),
        edit=inbox if card.edit_link else None,
    )
    return RenderedMail(text=_text(shown), html=_html(shown))


@dataclass(frozen=True)
class _Shown:
    """What one message shows of a card, each text already fitted to its limit."""

    intro: str | None
    lead: str
    """The policy's risk label and describe line (empty when it has neither)."""
    risk: Risk | None
    title: str
    status: str
    facts: list[tuple[str, str]]
    details: str
    params: list[tuple[str, str]]
    urls: DecisionUrls | None
    inbox: str
    inbox_text: str
    edit: str | None
    """Where the policy allows edits: the inbox page, where they are made."""


def _text(shown: _Shown) -> str:
    lines: list[str] = []
    if shown.intro:
        lines += [shown.intro, ""]
    if shown.lead:
        lines += [shown.lead, ""]
    lines += [shown.title, shown.status, ""]
    lines += [f"{label}: {value}" for label, value in shown.facts]
    if shown.details:
        lines += ["", shown.details]
    if shown.params:
        lines += ["", "Parameters:"]
        lines += [f"  {label}: {value}" for label, value in shown.params]
    if shown.urls is not None:
        lines += [
            "",
            "Opening a link decides nothing: it shows the request and a button to confirm.",
            f"Approve: {shown.urls.approve}",
            f"Deny: {shown.urls.deny}",
        ]
    if shown.edit is not None:
        lines += ["", f"{EDIT_LINK_TEXT} (change the params, then approve): {shown.edit}"]
    lines += ["", f"{shown.inbox_text}: {shown.inbox}", ""]
    return "\n".join(lines)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


RISK_COLOURS = {
    Risk.LOW: "#1a7f37",
    Risk.MEDIUM: "#9a6700",
    Risk.HIGH: "#bc4c00",
    Risk.CRITICAL: "#cf222e",
}
"""The risk label's colour in HTML mail (readable on white)."""


def _html(shown: _Shown) -> str:
    parts = ['<!doctype html><html><body style="font-family:sans-serif">']
    if shown.intro:
        parts.append(f"<p><strong>{_e(shown.intro)}</strong></p>")
    if shown.lead:
        colour = RISK_COLOURS[shown.risk] if shown.risk else "inherit"
        parts.append(
            f'<p style="font-size:1.15em;color:{colour}"><strong>{_e(shown.lead)}</strong></p>'
        )
    parts.append(f"<h2>{_e(shown.title)}</h2><p>{_e(shown.status)}</p><table>")
    parts += [
        f'<tr><th align="left">{_e(label)}</th><td>{_e(value)}</td></tr>'
        for label, value in shown.facts
    ]
    parts.append("</table>")
    if shown.details:
        parts.append(f'<pre style="white-space:pre-wrap">{_e(shown.details)}</pre>')
    if shown.params:
        parts.append("<h3>Parameters</h3><table>")
        parts += [
            f'<tr><th align="left">{_e(label)}</th><td><code>{_e(value)}</code></td></tr>'
            for label, value in shown.params
        ]
        parts.append("</table>")
    if shown.urls is not None:
        parts.append(
            f'<p><a href="{_e(shown.urls.approve)}">Approve</a> &nbsp; '
            f'<a href="{_e(shown.urls.deny)}">Deny</a></p>'
            "<p><small>Opening a link decides nothing: it shows the request and a button "
            "to confirm.</small></p>"
        )
    if shown.edit is not None:
        parts.append(
            f'<p><a href="{_e(shown.edit)}">{_e(EDIT_LINK_TEXT)}</a> '
            "<small>(change the params, then approve)</small></p>"
        )
    parts.append(f'<p><a href="{_e(shown.inbox)}">{_e(shown.inbox_text)}</a></p></body></html>')
    return "".join(parts)


def build_message(
    *,
    sender: str,
    to: str,
    subject: str,
    message_id: str,
    thread: tuple[str, ...],
    sent_at: datetime,
    mail: RenderedMail,
) -> EmailMessage:
    """One message, threaded under ``thread`` (the first message's id, when a follow-up).

    ``Auto-Submitted`` keeps vacation responders from answering (RFC 3834);
    ``X-Auto-Response-Suppress`` does the same for Exchange and Outlook.
    """
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id
    if thread:
        message["In-Reply-To"] = thread[-1]
        message["References"] = " ".join(thread)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message
