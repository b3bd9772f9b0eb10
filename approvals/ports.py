"""The contract between the core and each platform adapter, and the errors adapters raise.

An adapter translates: it renders cards for its platform and turns clicks into
:class:`~approvals.model.VoteCommand` values for the core. It never decides anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from approvals.card import ApprovalCard
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


class VoteSink(Protocol):
    """Where adapters send the votes they receive (the approval service)."""

    async def vote(self, command: VoteCommand) -> Outcome: ...


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
