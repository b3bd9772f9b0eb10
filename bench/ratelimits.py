"""Platform send limits as the delivery benchmark models them, and the best schedule they allow.

One :class:`SendLimits` value describes a platform's limits; the limited fakes enforce it
message by message (:meth:`SendLimits.wait` before, :meth:`SendLimits.record` after), and
:func:`least_makespan` computes the least time a perfect sender would need for a backlog
under the same limits, which is what signoff's delivery time is compared with.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """At most ``count`` messages in any ``period`` seconds (a sliding window)."""

    count: int
    period: float

    def scaled(self, factor: float) -> Window:
        return Window(self.count, self.period / factor)


@dataclass(frozen=True)
class SendLimits:
    """What a platform allows.

    Attributes:
        interval: least seconds between two messages to one chat.
        chat_window: a sliding window per chat (Telegram's per-group limit).
        chat_windows: more sliding windows per chat, all kept at once (Teams allows 7 per
            second, 8 per 2 s, 60 per 30 s and 1,800 an hour in one conversation).
        chat_bucket: a fixed window per chat that starts with its first message and resets
            ``period`` later (Discord's rate-limit buckets).
        overall: a sliding window over every message (the platform's global limit).
    """

    interval: float | None = None
    chat_window: Window | None = None
    chat_windows: tuple[Window, ...] = ()
    chat_bucket: Window | None = None
    overall: Window | None = None

    def scaled(self, factor: float) -> SendLimits:
        """The same limits with time running ``factor`` times faster."""
        return SendLimits(
            interval=None if self.interval is None else self.interval / factor,
            chat_window=self.chat_window.scaled(factor) if self.chat_window else None,
            chat_windows=tuple(window.scaled(factor) for window in self.chat_windows),
            chat_bucket=self.chat_bucket.scaled(factor) if self.chat_bucket else None,
            overall=self.overall.scaled(factor) if self.overall else None,
        )

    def book(self) -> LimitBook:
        return LimitBook(self)


class _Sliding:
    def __init__(self, window: Window) -> None:
        self.window = window
        self.sent: deque[float] = deque()

    def wait(self, now: float) -> float:
        while self.sent and self.sent[0] <= now - self.window.period:
            self.sent.popleft()
        if len(self.sent) < self.window.count:
            return 0.0
        return self.sent[0] + self.window.period - now


class _Bucket:
    def __init__(self, window: Window) -> None:
        self.window = window
        self.remaining = window.count
        self.reset_at = float("-inf")

    def wait(self, now: float) -> float:
        if now >= self.reset_at:
            return 0.0
        return 0.0 if self.remaining > 0 else self.reset_at - now

    def record(self, now: float) -> None:
        if now >= self.reset_at:
            self.remaining, self.reset_at = self.window.count, now + self.window.period
        self.remaining -= 1


class LimitBook:
    """The state of :class:`SendLimits` over time: who sent when."""

    def __init__(self, limits: SendLimits) -> None:
        self.limits = limits
        self._last: dict[str, float] = {}
        self._windows: dict[str, _Sliding] = {}
        self._more_windows: dict[str, list[_Sliding]] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._overall = _Sliding(limits.overall) if limits.overall else None

    def _chat_window(self, chat: str) -> _Sliding | None:
        if self.limits.chat_window is None:
            return None
        if chat not in self._windows:
            self._windows[chat] = _Sliding(self.limits.chat_window)
        return self._windows[chat]

    def _chat_windows(self, chat: str) -> list[_Sliding]:
        if chat not in self._more_windows:
            self._more_windows[chat] = [_Sliding(window) for window in self.limits.chat_windows]
        return self._more_windows[chat]

    def _bucket(self, chat: str) -> _Bucket | None:
        if self.limits.chat_bucket is None:
            return None
        if chat not in self._buckets:
            self._buckets[chat] = _Bucket(self.limits.chat_bucket)
        return self._buckets[chat]

    def wait(self, chat: str, now: float) -> float:
        """Seconds until a message to ``chat`` is allowed (0: now)."""
        waits = [0.0]
        if self.limits.interval is not None and chat in self._last:
            waits.append(self._last[chat] + self.limits.interval - now)
        for limiter in (self._chat_window(chat), self._bucket(chat), self._overall):
            if limiter is not None:
                waits.append(limiter.wait(now))
        waits.extend(window.wait(now) for window in self._chat_windows(chat))
        return max(waits)

    def record(self, chat: str, now: float) -> None:
        """A message to ``chat`` went through at ``now``."""
        self._last[chat] = now
        window = self._chat_window(chat)
        if window is not None:
            window.sent.append(now)
        for more in self._chat_windows(chat):
            more.sent.append(now)
        bucket = self._bucket(chat)
        if bucket is not None:
            bucket.record(now)
        if self._overall is not None:
            self._overall.sent.append(now)


def least_makespan(limits: SendLimits, backlog: Mapping[str, int]) -> float:
    """Seconds from the first to the last message when a perfect sender delivers
    ``backlog`` (messages per chat) under ``limits``: each message goes at the earliest
    moment the limits allow."""
    book = limits.book()
    remaining = {chat: count for chat, count in backlog.items() if count > 0}
    now = 0.0
    first: float | None = None
    while remaining:
        ready = [(now + book.wait(chat, now), chat) for chat in remaining]
        at, chat = min(ready)
        now = at
        # The wait was computed at the earlier moment; confirm nothing else binds now.
        while (extra := book.wait(chat, now)) > 0:
            now += extra
        book.record(chat, now)
        first = now if first is None else first
        remaining[chat] -= 1
        if not remaining[chat]:
            del remaining[chat]
    return 0.0 if first is None else now - first
