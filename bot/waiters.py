"""Long-poll support: agents waiting for a request to become final are woken the moment it is.

Changes committed by this process wake waiters at once (the service's change listener). A
change committed by another process sharing the PostgreSQL database arrives as a
notification (:mod:`approvals.store.notify`) and wakes them just as fast. Whatever wakes a waiter,
it reads the request from the store before answering. A periodic re-check covers what a
notification cannot: every 5 s while notifications are being received or when there is no
other process to hear from (SQLite serves one process, whose every change wakes waiters
directly), every second while the listener is reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable

from approvals.model import ApprovalRequest
from approvals.service import ApprovalService

DATABASE_POLL_SECONDS = 1.0
"""Re-check interval while cross-process notifications are expected but not arriving."""
NOTIFIED_RECHECK_SECONDS = 5.0
"""Re-check interval when every change is announced (a safety net only)."""


class RequestWaiters:
    """Lets callers wait until a request is final, or a timeout passes.

    Args:
        service: reads the request.
        notifications_live: tells whether cross-process notifications are being received
            right now; ``None`` when there are none to receive (SQLite, one process, where
            the service's own change listener announces every decision).
    """

    def __init__(
        self,
        service: ApprovalService,
        *,
        notifications_live: Callable[[], bool] | None = None,
    ) -> None:
        self._service = service
        self._notifications_live = notifications_live
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._closing = False

    def use_notifications(self, notifications_live: Callable[[], bool] | None) -> None:
        """Say where to learn whether notifications are being received (set at start-up)."""
        self._notifications_live = notifications_live

    @property
    def recheck_interval(self) -> float:
        """Seconds between re-reads of a waited-on request with no wake-up in between."""
        live = self._notifications_live
        if live is None or live():
            return NOTIFIED_RECHECK_SECONDS
        return DATABASE_POLL_SECONDS

    @property
    def waiting(self) -> int:
        """How many long-polls are waiting now."""
        return sum(len(events) for events in self._events.values())

    def on_change(self, request: ApprovalRequest) -> None:
        """Service listener: wake everyone waiting on a request that just became final."""
        if request.status.is_final:
            self.wake(request.id)

    def wake(self, request_id: str) -> None:
        """Wake everyone waiting on ``request_id`` (it became final, here or elsewhere)."""
        for event in self._events.pop(request_id, set()):
            event.set()

    def recheck_all(self) -> None:
        """Make every waiter read its request again (notifications may have been missed)."""
        for request_id in list(self._events):
            self.wake(request_id)

    def release_all(self) -> None:
        """Shutting down: answer every waiting long-poll now with the current state."""
        self._closing = True
        for events in self._events.values():
            for event in events:
                event.set()
        self._events.clear()

    async def wait_final(self, request_id: str, within: float) -> ApprovalRequest | None:
        """The request once final, or as it stands when ``within`` seconds have passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        event = asyncio.Event()
        try:
            while True:
                # Registered before reading: a wake-up between the read and the wait is kept.
                self._events[request_id].add(event)
                request = await self._service.get(request_id)
                if request is None or request.status.is_final or self._closing:
                    return request
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return request
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        event.wait(), timeout=min(remaining, self.recheck_interval)
                    )
                event.clear()
        finally:
            waiting = self._events.get(request_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._events[request_id]
