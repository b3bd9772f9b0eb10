"""Telegram's send limits, held inside the adapter: per chat, per group and overall.

Telegram allows about 1 message a second in one chat, 20 a minute in one group and 30 a
second for the whole bot, and answers 429 with ``retry_after`` beyond that. The outbox
already paces each destination, and after a 429 holds it (in the database, for every
process) until ``retry_after`` has passed; this pacer also holds the group and overall
windows across destinations.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class SendLimit:
    """At most ``count`` messages in any ``period``."""

    count: int
    period: timedelta

    def __post_init__(self) -> None:
        if self.count < 1 or self.period <= timedelta(0):
            raise ValueError("a send limit needs a positive count and period")


PER_CHAT_INTERVAL = timedelta(seconds=1)
GROUP_LIMIT = SendLimit(20, timedelta(minutes=1))
OVERALL_LIMIT = SendLimit(30, timedelta(seconds=1))
MAX_PACING_WAIT = timedelta(seconds=5)
"""A send that would wait longer than this is handed back to the outbox to retry later."""


class PacingDelay(Exception):
    """Sending now would break a limit; try again after ``wait``."""

    def __init__(self, wait: timedelta, why: str) -> None:
        super().__init__(f"{why}: next send in {wait.total_seconds():.1f}s")
        self.wait = wait


class _Window:
    """A sliding window log of sends: finished ones by the time their answer came, plus the
    ones still in flight (which count, but cannot expire yet).

    Telegram counts a message when it arrives, somewhere between our request and its
    answer; counting from the answer keeps every window Telegram sees within the limit,
    however long requests take on the way.
    """

    def __init__(self, limit: SendLimit) -> None:
        self._count = limit.count
        self._period = limit.period.total_seconds()
        self._done: deque[float] = deque()
        self.in_flight = 0

    def wait(self, now: float) -> float | None:
        """Seconds until a slot frees; ``None`` when only a send in flight can free one."""
        while self._done and self._done[0] <= now - self._period:
            self._done.popleft()
        if len(self._done) + self.in_flight < self._count:
            return 0.0
        if not self._done:
            return None
        return self._done[0] + self._period - now

    def finish(self, now: float) -> None:
        self.in_flight -= 1
        self._done.append(now)


def is_group(chat_id: int) -> bool:
    """Groups, supergroups and channels have negative ids; private chats positive ones."""
    return chat_id < 0


class SendPacer:
    """Decides when the next message to a chat may go.

    Use :meth:`slot` around each request. A send counts from the moment it is let through;
    it leaves a window ``period`` after Telegram answered. Waits up to ``max_wait``; a
    longer wait raises :class:`PacingDelay`.
    """

    def __init__(
        self,
        *,
        per_chat: timedelta = PER_CHAT_INTERVAL,
        group: SendLimit = GROUP_LIMIT,
        overall: SendLimit = OVERALL_LIMIT,
        max_wait: timedelta = MAX_PACING_WAIT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_chat = per_chat.total_seconds()
        self._group_limit = group
        self._overall = _Window(overall)
        self._groups: dict[int, _Window] = {}
        self._last: dict[int, float] = {}
        self._busy: set[int] = set()
        self._max_wait = max_wait.total_seconds()
        self._monotonic = monotonic
        self._finished = asyncio.Event()

    def _group(self, chat_id: int) -> _Window | None:
        if not is_group(chat_id):
            return None
        window = self._groups.get(chat_id)
        if window is None:
            window = self._groups[chat_id] = _Window(self._group_limit)
        return window

    def _windows(self, chat_id: int) -> list[_Window]:
        group = self._group(chat_id)
        return [self._overall] if group is None else [self._overall, group]

    def _wait(self, chat_id: int, now: float) -> tuple[float | None, str]:
        """The longest wait any limit asks for (``None``: until a send in flight ends)."""
        waits: list[tuple[float | None, str]] = [(self._overall.wait(now), "overall send limit")]
        group = self._group(chat_id)
        if group is not None:
            waits.append((group.wait(now), f"group {chat_id} send limit"))
        if chat_id in self._busy:
            waits.append((None, f"chat {chat_id} send in flight"))
        elif chat_id in self._last:
            waits.append((self._last[chat_id] + self._per_chat - now, f"chat {chat_id} interval"))
        timed = [(wait, why) for wait, why in waits if wait is not None]
        longest = max(timed) if timed else (0.0, "")
        if longest[0] <= 0:
            blocked = next(((wait, why) for wait, why in waits if wait is None), None)
            if blocked is not None:
                return blocked
        return longest

    async def _acquire(self, chat_id: int) -> None:
        started = self._monotonic()
        while True:
            now = self._monotonic()
            wait, why = self._wait(chat_id, now)
            if wait is not None and wait <= 0:
                for window in self._windows(chat_id):
                    window.in_flight += 1
                self._busy.add(chat_id)
                return
            budget = self._max_wait - (now - started)
            if wait is not None and wait > budget:
                raise PacingDelay(timedelta(seconds=wait), why)
            if wait is None and budget <= 0:
                raise PacingDelay(timedelta(seconds=self._max_wait), why)
            finished = self._finished
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), wait if wait is not None else budget)

    def _finish(self, chat_id: int) -> None:
        now = self._monotonic()
        for window in self._windows(chat_id):
            window.finish(now)
        self._busy.discard(chat_id)
        self._last[chat_id] = now
        # Wake every waiter to look again; the next wait uses a fresh event.
        self._finished.set()
        self._finished = asyncio.Event()

    @contextlib.asynccontextmanager
    async def slot(self, chat_id: int) -> AsyncIterator[None]:
        """Hold a place for one request to ``chat_id``; it counts as sent when it ends."""
        await self._acquire(chat_id)
        try:
            yield
        finally:
            self._finish(chat_id)
