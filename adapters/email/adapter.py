"""The email adapter: cards mailed through an SMTP relay with aiosmtplib.

Email has no buttons and no edits. A card to a person carries Approve / Deny links of their
own (signed, single-use, see :mod:`approvals.links`) that open a confirm page in the web
inbox; a card to a mailing list carries only the inbox link. What chat platforms do by
editing the card (the outcome, quorum progress, an escalation note) and by replying
(reminders) is a new message threaded under the first one: same Subject, and
``In-Reply-To`` / ``References`` naming the first message's ``Message-ID``.

SMTP errors reach the outbox as :class:`~approvals.ports.DeliveryError`: a 4xx reply, a
refused or dropped connection or a timeout is temporary (retried with backoff); a 5xx reply
is permanent (dead-lettered with the server's own answer).
"""

from __future__ import annotations

import logging
import secrets
import ssl
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Literal

import aiosmtplib

from adapters.email.rendering import (
    DecisionUrls,
    build_message,
    render_card,
    subject_for,
)
from adapters.pacing import SendLimit, SendPacer
from approvals.card import ApprovalCard
from approvals.directory import Destination, DestinationKind
from approvals.links import DecisionLinks
from approvals.model import Verdict
from approvals.ports import DeliveryError, MessageRef, VoteSink

log = logging.getLogger(__name__)

EMAIL_PLATFORM = "email"
CONFIRM_PATH = "/confirm/{request_id}/{verdict}/{token}"
"""The web inbox's confirm page for a decision link (``adapters.web.inbox.CONFIRM_PATH``)."""
MAX_SERVER_TEXT = 300
"""How much of an SMTP server's answer an error keeps."""

TlsMode = Literal["starttls", "implicit", "none"]

# The middle part of a Message-ID: which kind of message of the thread it is.
_CARD, _UPDATE, _REMINDER = "0", "1", "2"


class EmailAdapter:
    """Mails approval cards; decisions come back through the web inbox's confirm page."""

    platform = EMAIL_PLATFORM

    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: TlsMode,
        sender: str,
        public_url: str,
        links: DecisionLinks | None,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        rate_per_minute: int = 30,
        link_lifetime: timedelta = timedelta(hours=24),
        timeout: float = 30.0,
        min_send_interval: timedelta | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._tls = tls
        self._sender = sender
        self._domain = sender.rpartition("@")[2]
        self._public_url = public_url.rstrip("/")
        self._links = links
        self._username = username
        self._password = password
        self._tls_context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self._link_lifetime = link_lifetime
        self._timeout = timeout
        self.min_send_interval = min_send_interval or timedelta(0)
        """Each recipient or list is an outbox lane of its own; the relay's rate is kept
        across all of them by the pacer."""
        # A relay limits its sender, whoever the mail is for (Exchange Online: 30 messages
        # a minute per mailbox): messages are spaced evenly, 1 / rate minutes apart.
        self._pacer = SendPacer(
            overall=(SendLimit(1, timedelta(minutes=1) / rate_per_minute),),
            label=lambda recipient: f"mail to {recipient}",
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, sink: VoteSink) -> None:
        # Nothing to connect: each message opens its own SMTP conversation, and decisions
        # arrive as the web inbox's confirm posts.
        return None

    async def stop(self) -> None:
        return None

    async def check_health(self) -> bool:
        """Whether the relay answers, TLS verifies and the credentials are accepted."""
        client = self._client()
        try:
            async with client:
                await client.noop()
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            log.warning("email relay %s:%s is not healthy: %s", self._host, self._port, exc)
            return False
        return True

    # -- the adapter contract ---------------------------------------------------------------

    async def send(self, card: ApprovalCard, destination: Destination) -> MessageRef:
        personal = destination.kind is DestinationKind.USER
        subject = subject_for(card)
        message_id = self._message_id(card.request_id, _CARD)
        await self._mail(
            to=destination.target,
            subject=subject,
            message_id=message_id,
            thread=(),
            card=card,
            personal=personal,
            intro=None,
        )
        return MessageRef(
            self.platform,
            {
                "to": destination.target,
                "message_id": message_id,
                "subject": subject,
                "personal": personal,
            },
        )

    async def edit(self, ref: MessageRef, card: ApprovalCard) -> None:
        """A mail cannot change: the new state is a message in the card's thread.

        Edits come when the request is decided, when an approval counts toward a quorum and
        when the request escalates: each is news to the recipient, and none repeats.
        """
        if card.status.is_final:
            intro = f"Decided: {card.status_line}"
        elif card.note:
            intro = f"Update: {card.note}"
        else:
            intro = f"Update: {card.status_line}"
        await self._follow_up(ref, card, intro, _UPDATE)

    async def reply(self, ref: MessageRef, card: ApprovalCard, text: str) -> None:
        """A reminder, in the card's thread, with fresh links."""
        await self._follow_up(ref, card, text, _REMINDER)

    # -- sending ----------------------------------------------------------------------------

    async def _follow_up(self, ref: MessageRef, card: ApprovalCard, intro: str, kind: str) -> None:
        first = str(ref.data.get("message_id", ""))
        await self._mail(
            to=str(ref.data["to"]),
            subject=str(ref.data.get("subject") or subject_for(card)),
            message_id=self._message_id(card.request_id, kind),
            thread=(first,) if first else (),
            card=card,
            personal=bool(ref.data.get("personal", True)),
            intro=intro,
        )

    def _message_id(self, request_id: str, kind: str) -> str:
        # Short on purpose: a long id is folded onto a second header line, and some
        # parsers hand it back with the fold's leading space.
        return f"<{request_id}.{kind}.{secrets.token_hex(6)}@{self._domain}>"

    async def _mail(
        self,
        *,
        to: str,
        subject: str,
        message_id: str,
        thread: tuple[str, ...],
        card: ApprovalCard,
        personal: bool,
        intro: str | None,
    ) -> None:
        urls = await self._urls(card, to) if personal and card.buttons else None
        now = self._now()
        message = build_message(
            sender=self._sender,
            to=to,
            subject=subject,
            message_id=message_id,
            thread=thread,
            sent_at=now,
            mail=render_card(card, public_url=self._public_url, urls=urls, intro=intro),
        )
        await self._deliver(message)

    def _now(self) -> datetime:
        return self._links.now() if self._links is not None else datetime.now(UTC)

    async def _urls(self, card: ApprovalCard, address: str) -> DecisionUrls | None:
        """This recipient's Approve / Deny links, expiring with the request at the latest."""
        if self._links is None:
            return None
        expires_at = min(card.deadline, self._links.now() + self._link_lifetime)
        urls = {}
        for verdict in (Verdict.APPROVE, Verdict.DENY):
            token = await self._links.issue(
                platform=self.platform,
                identity=address,
                request_id=card.request_id,
                verdict=verdict,
                expires_at=expires_at,
            )
            path = CONFIRM_PATH.format(
                request_id=card.request_id, verdict=verdict.value, token=token
            )
            urls[verdict] = self._public_url + path
        return DecisionUrls(approve=urls[Verdict.APPROVE], deny=urls[Verdict.DENY])

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            use_tls=self._tls == "implicit",
            # STARTTLS is required, never opportunistic: aiosmtplib's default would send
            # the password in plain text to a relay that does not offer it.
            start_tls=self._tls == "starttls",
            tls_context=self._tls_context,
            timeout=self._timeout,
        )

    async def _deliver(self, message: EmailMessage) -> None:
        try:
            async with self._pacer.slot(str(message["To"])), self._client() as client:
                await client.send_message(message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0] if exc.recipients else None
            if first is None:
                raise DeliveryError("SMTP: every recipient was refused") from exc
            raise _response_error(first.code, first.message) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _response_error(exc.code, exc.message) from exc
        except aiosmtplib.SMTPNotSupported as exc:
            # The relay lacks what the config requires (STARTTLS, AUTH): retrying cannot help.
            raise DeliveryError(f"SMTP: {_cut(str(exc))}", permanent=True) from exc
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
            raise DeliveryError(f"SMTP relay unreachable: {_cut(str(exc))}") from exc


def _cut(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line[:MAX_SERVER_TEXT]


def _response_error(code: int, text: str) -> DeliveryError:
    """A relay's refusal: 5xx is final, anything else may pass later."""
    return DeliveryError(f"SMTP {code} {_cut(text)}", permanent=500 <= code < 600)
