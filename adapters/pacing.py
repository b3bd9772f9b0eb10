"""Send limits held inside an adapter: sliding windows per destination and for the whole bot.

The outbox paces each destination by the adapter's ``min_send_interval`` and, after a 429,
holds it (in the database, for every process) until ``Retry-After`` has passed. Some
platforms limit more than that: several windows per conversation (Teams allows 7 messages a
second, 8 per 2 s, 60 per 30 s and 1,800 an hour in one conversation), a window per group
(Telegram), and one for the whole bot. :class:`SendPacer` keeps every such window for the
sends of this process, so that a backlog goes out as fast as the platform allows and no
faster, instead of meeting 429s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from approvals.ports import DeliveryError

DEFAULT_MAX_WAIT = timedelta(seconds=5)
"""A send that would wait longer than this is handed back to the outbox to retry later."""


@dataclass(frozen=True)
class SendLimit:
    """At most ``count`` messages in any ``period``."""

    count: int
    period: timedelta

    def __post_init__(self) -> None:
        if self.count < 1 or self.period <= timedelta(0):
            raise ValueError("a send limit needs a positive count and period")


class PacingDelay(DeliveryError):
    """Sending now would break a limit; try again after ``wait``.

    A delivery error in the port's terms: raised from an adapter's send, the outbox holds
    the destination until ``wait`` has passed and tries again.
    """

    def __init__(self, wait: timedelta, why: str) -> None:
        super().__init__(f"{why}: next send in {wait.total_seconds():.1f}s", retry_after=wait)
        self.wait = wait


class _Window:
    """A sliding window log of sends: finished ones by the time their answer came, plus the
    ones still in flight (which count, but cannot expire yet).

    A platform counts a message when it arrives, somewhere between our request and its
    answer; counting from the answer keeps every window the platform sees within the
    limit, however long requests take on the way.
    """

    def __init__(self, limit: SendLimit, name: str) -> None:
        self.name = name
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


def describe(limit: SendLimit) -> str:
    return f"{limit.count} per {limit.period.total_seconds():g}s"


class SendPacer:
    """Decides when the next message to a destination may go.

    Use :meth:`slot` around each request. One request per destination is in flight at a
    time, ``interval`` apart; every window of ``per_destination(destination)`` and of
    ``overall`` must have room (``label`` names a destination in the reasons given). A
    send counts from the moment it is let through and leaves a window ``period`` after the
    platform answered. Waits up to ``max_wait``; a longer wait raises :class:`PacingDelay`.
    """

    def __init__(
        self,
        *,
        interval: timedelta = timedelta(0),
        per_destination: Callable[[Hashable], Sequence[SendLimit]] = lambda _: (),
        overall: Sequence[SendLimit] = (),
        max_wait: timedelta = DEFAULT_MAX_WAIT,
        monotonic: Callable[[], float] = time.monotonic,
        label: Callable[[Hashable], str] = str,
    ) -> None:
        self._interval = interval.total_seconds()
        self._limits_of = per_destination
        self._label = label
        self._overall = [
            _Window(limit, f"overall send limit ({describe(limit)})") for limit in overall
        ]
        self._own: dict[Hashable, list[_Window]] = {}
        self._last: dict[Hashable, float] = {}
        self._busy: set[Hashable] = set()
        self._max_wait = max_wait.total_seconds()
        self._monotonic = monotonic
        self._finished = asyncio.Event()

    def _windows(self, destination: Hashable) -> list[_Window]:
        own = self._own.get(destination)
        if own is None:
            own = self._own[destination] = [
                _Window(limit, f"{self._label(destination)} send limit ({describe(limit)})")
                for limit in self._limits_of(destination)
            ]
        return [*self._overall, *own]

    def _wait(self, destination: Hashable, now: float) -> tuple[float | None, str]:
        """The longest wait any limit asks for (``None``: until a send in flight ends)."""
        waits = [(window.wait(now), window.name) for window in self._windows(destination)]
        label = self._label(destination)
        if destination in self._busy:
            waits.append((None, f"{label} send in flight"))
        elif destination in self._last:
            waits.append((self._last[destination] + self._interval - now, f"{label} interval"))
        timed = [(wait, why) for wait, why in waits if wait is not None]
        longest = max(timed) if timed else (0.0, "")
        if longest[0] <= 0:
            blocked = next(((wait, why) for wait, why in waits if wait is None), None)
            if blocked is not None:
                return blocked
        return longest

    async def _acquire(self, destination: Hashable) -> None:
        started = self._monotonic()
        while True:
            now = self._monotonic()
            wait, why = self._wait(destination, now)
            if wait is not None and wait <= 0:
                for window in self._windows(destination):
                    window.in_flight += 1
                self._busy.add(destination)
                return
            budget = self._max_wait - (now - started)
            if wait is not None and wait > budget:
                raise PacingDelay(timedelta(seconds=wait), why)
            if wait is None and budget <= 0:
                raise PacingDelay(timedelta(seconds=self._max_wait), why)
            finished = self._finished
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), wait if wait is not None else budget)

    def _finish(self, destination: Hashable) -> None:
        now = self._monotonic()
        for window in self._windows(destination):
            window.finish(now)
        self._busy.discard(destination)
        self._last[destination] = now
        # Wake every waiter to look again; the next wait uses a fresh event.
        self._finished.set()
        self._finished = asyncio.Event()

    @contextlib.asynccontextmanager
    async def slot(self, destination: Hashable) -> AsyncIterator[None]:
        """Hold a place for one request to ``destination``; it counts as sent when it ends."""
        await self._acquire(destination)
        try:
            yield
        finally:
            self._finish(destination)
