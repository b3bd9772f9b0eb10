"""Long-poll support: agents waiting for a request to become final are woken the moment it is.

Changes committed by this process wake waiters at once; a slow poll of the database covers
decisions made by another process sharing it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

from approvals.model import ApprovalRequest
from approvals.service import ApprovalService

DATABASE_POLL_SECONDS = 1.0


class RequestWaiters:
    """Lets callers wait until a request is final, or a timeout passes."""

    def __init__(self, service: ApprovalService) -> None:
        self._service = service
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._closing = False

    def on_change(self, request: ApprovalRequest) -> None:
        """Service listener: wake everyone waiting on a request that just became final."""
        if request.status.is_final:
            for event in self._events.pop(request.id, set()):
                event.set()

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
        self._events[request_id].add(event)
        try:
            while True:
                request = await self._service.get(request_id)
                if request is None or request.status.is_final or self._closing:
                    return request
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return request
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        event.wait(), timeout=min(remaining, DATABASE_POLL_SECONDS)
                    )
        finally:
            waiting = self._events.get(request_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._events[request_id]
