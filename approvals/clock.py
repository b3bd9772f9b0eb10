"""Time as an injected dependency: the system clock, and manual clocks for tests and tools."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

_ELAPSED_CLOCK = getattr(time, "CLOCK_BOOTTIME", None)
"""Linux's monotonic clock that keeps counting while the machine sleeps (elsewhere: none)."""


class Clock(Protocol):
    """Something that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


@runtime_checkable
class ElapsedClock(Protocol):
    """A clock that can also tell real elapsed time, whatever the wall clock does.

    ``elapsed()`` is in seconds from an arbitrary start and never jumps; comparing it with
    ``now()`` shows when the wall clock was stepped (see :mod:`approvals.clocksteps`).
    """

    def now(self) -> datetime: ...

    def elapsed(self) -> float: ...


class SystemClock:
    """The real wall clock, in UTC, and the system's monotonic clock for elapsed time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def elapsed(self) -> float:
        # CLOCK_BOOTTIME counts the time a suspended machine slept: that time really passed
        # for the people waiting, so it must not look like a step of the wall clock.
        if _ELAPSED_CLOCK is not None:
            return time.clock_gettime(_ELAPSED_CLOCK)
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to; deadlines are tested by advancing it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = moment


class SteppingClock(ManualClock):
    """A manual clock with an elapsed-time clock beside it, whose wall time can be stepped.

    ``advance`` is time passing (both clocks move); ``step`` is someone setting the wall
    clock (only the wall clock moves).
    """

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__(start)
        self._elapsed = 0.0

    def elapsed(self) -> float:
        return self._elapsed

    def advance(self, delta: timedelta) -> datetime:
        self._elapsed += delta.total_seconds()
        return super().advance(delta)

    def set(self, moment: datetime) -> None:
        previous = self.now()
        super().set(moment)
        self._elapsed += (moment - previous).total_seconds()

    def step(self, delta: timedelta) -> datetime:
        """Set the wall clock ``delta`` away without any time passing."""
        super().set(self.now() + delta)
        return self.now()
