"""The contract between the core and each platform adapter, and the errors adapters raise.

An adapter translates: it renders cards for its platform and turns clicks into
:class:`~approvals.model.VoteCommand` values for the core. It never decides anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from approvals.card import ApprovalCard
from approvals.clicks import Click, ClickOutcome, ConfirmPrompt, ReasonPrompt
from approvals.directory import Destination
from approvals.model import VoteCommand
from approvals.outcomes import Outcome


@dataclass(frozen=True)
class MessageRef:
    """Where a posted card lives, so it can be edited later (hours later, after restarts).

    ``data`` is platform-specific JSON: Slack ``{channel, ts}``, Telegram
    ``{chat_id, message_id}``, Discord ``{channel_id, message_id}``.
    """

    platform: str
    data: dict[str, Any]


class DeliveryError(Exception):
    """Sending failed. The dispatcher retries unless ``permanent``.

    Attributes:
        retry_after: the platform's own "try again after" (429 ``Retry-After``), if it gave one.
        permanent: retrying cannot help (channel not found, bot removed, invalid payload).
    """

    def __init__(
        self, message: str, *, retry_after: timedelta | None = None, permanent: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


MAX_RETRY_AFTER = timedelta(hours=24)


def parse_retry_after(raw: object, *, default: timedelta) -> timedelta:
    """A platform's ``Retry-After`` value as a wait; ``default`` when missing or unusable.

    Non-numbers, negatives, NaN and infinity fall back to ``default``; absurdly long waits
    are capped at a day.
    """
    try:
        seconds = float(str(raw)) if raw is not None else None
    except ValueError:
        seconds = None
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return default
    return min(timedelta(seconds=seconds), MAX_RETRY_AFTER)


class VoteSink(Protocol):
    """What an adapter is given (the approval service, seen narrowly): where its clicks go,
    and a read-only look at a request's card. Never the service's rules or its store."""

    async def vote(self, command: VoteCommand) -> Outcome: ...

    async def card(self, request_id: str) -> ApprovalCard | None:
        """The request's card as it stands now, or ``None`` if there is no such request."""

    async def handle_click(self, click: Click) -> ClickOutcome:
        """Decide a click on a card (see ``approvals.clicks``)."""

    async def reason_prompt(self, click: Click) -> ReasonPrompt | ClickOutcome:
        """The first click of a deny with a reason: the form to show, or the refusal."""

    async def confirm_prompt(self, click: Click) -> ConfirmPrompt | None:
        """The first Approve under a policy that needs confirming: the confirmation to
        show, or ``None``: hand the click to :meth:`handle_click` as it is."""

    async def confirm_step(self, command: VoteCommand) -> ConfirmPrompt | None:
        """The confirmation a page shows before an approval, or ``None``: vote as it is."""


@runtime_checkable
class Adapter(Protocol):
    """One chat platform (or the web inbox).

    Attributes:
        platform: the platform name used in config and destinations (``slack``...).
        min_send_interval: the least time between two sends to one destination.
    """

    platform: str
    min_send_interval: timedelta

    async def start(self, sink: VoteSink) -> None:
        """Connect and begin taking clicks; clicks go to ``sink``."""

    async def stop(self) -> None:
        """Stop taking clicks and close connections."""

    async def check_health(self) -> bool:
        """Whether the platform is reachable and our credentials work."""

    async def send(self, card: ApprovalCard, destination: Destination) -> MessageRef:
        """Post a new card. Raises :class:`DeliveryError`."""

    async def edit(self, ref: MessageRef, card: ApprovalCard) -> None:
        """Replace a posted card with a newer rendering. Raises :class:`DeliveryError`."""

    async def reply(self, ref: MessageRef, card: ApprovalCard, text: str) -> None:
        """Post a follow-up (a reminder) next to a card, e.g. in its thread."""


@runtime_checkable
class SingletonInbound(Protocol):
    """Optional for adapters: clicks arrive over a connection only one process may hold.

    Telegram long polling, the Discord gateway and Slack Socket Mode each allow one
    connection per bot token. When several signoff processes share a database, the runtime
    starts such an adapter with ``start(sink, inbound=False)`` (sending works at once, in
    every process) and opens the inbound connection only in the process that holds the
    platform's lock. HTTP-mode inbound (Slack events, the Telegram webhook) needs none of
    this: every process serves it.
    """

    @property
    def inbound_is_singleton(self) -> bool:
        """Whether, in the configured mode, clicks arrive over a one-per-token connection."""

    async def start(self, sink: VoteSink, *, inbound: bool = True) -> None:
        """Like :meth:`Adapter.start`; with ``inbound=False`` the singleton connection stays
        closed until :meth:`start_inbound`."""

    async def start_inbound(self) -> None:
        """Open the inbound connection (idempotent). Returns without waiting for it to be up."""

    async def stop_inbound(self) -> None:
        """Close the inbound connection at once (idempotent); sending keeps working."""


@runtime_checkable
class HttpInbound(Protocol):
    """Optional for adapters: clicks (or pages) arrive as HTTP requests to signoff itself
    (Slack's events URL, the Telegram webhook, the web inbox). The application mounts the
    routes at its root, in every process, and swaps them when a reload replaces the adapter.
    """

    def router(self) -> Any:
        """The routes to mount, a FastAPI ``APIRouter`` (the core names no web framework)."""
