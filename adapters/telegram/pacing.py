"""Telegram's send limits, held inside the adapter: per chat, per group and overall.

Telegram allows about 1 message a second in one chat, 20 a minute in one group and 30 a
second for the whole bot, and answers 429 with ``retry_after`` beyond that. The outbox
already paces each destination, and after a 429 holds it (in the database, for every
process) until ``retry_after`` has passed; this pacer also holds the group and overall
windows across destinations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from datetime import timedelta

from adapters.pacing import DEFAULT_MAX_WAIT, PacingDelay, SendLimit
from adapters.pacing import SendPacer as Pacer

__all__ = ["PacingDelay", "SendLimit", "SendPacer", "is_group"]

PER_CHAT_INTERVAL = timedelta(seconds=1)
GROUP_LIMIT = SendLimit(20, timedelta(minutes=1))
OVERALL_LIMIT = SendLimit(30, timedelta(seconds=1))
MAX_PACING_WAIT = DEFAULT_MAX_WAIT


def is_group(chat_id: int) -> bool:
    """Groups, supergroups and channels have negative ids; private chats positive ones."""
    return chat_id < 0


class SendPacer(Pacer):
    """Telegram's limits: one message per ``per_chat`` in a chat, the ``group`` window in
    each group, the ``overall`` window for the bot. See :class:`adapters.pacing.SendPacer`."""

    def __init__(
        self,
        *,
        per_chat: timedelta = PER_CHAT_INTERVAL,
        group: SendLimit = GROUP_LIMIT,
        overall: SendLimit = OVERALL_LIMIT,
        max_wait: timedelta = MAX_PACING_WAIT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        def limits_of(chat_id: Hashable) -> tuple[SendLimit, ...]:
            return (group,) if isinstance(chat_id, int) and is_group(chat_id) else ()

        def label(chat_id: Hashable) -> str:
            kind = "group" if isinstance(chat_id, int) and is_group(chat_id) else "chat"
            return f"{kind} {chat_id}"

        super().__init__(
            interval=per_chat,
            per_destination=limits_of,
            overall=(overall,),
            max_wait=max_wait,
            monotonic=monotonic,
            label=label,
        )
