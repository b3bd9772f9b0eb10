"""Fakes that record what happened: a platform adapter that keeps every card it was given."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import count

from aiohttp import web

from approvals.card import ApprovalCard
from approvals.directory import Destination
from approvals.ports import DeliveryError, MessageRef, VoteSink


@dataclass
class RecordedCall:
    kind: str  # send | edit | reply
    destination: str
    card: ApprovalCard
    text: str | None = None


@dataclass
class RecordingAdapter:
    """An adapter for a made-up platform that records calls and fails on request.

    ``failures`` is a queue of errors to raise on the next calls, one per call.
    """

    platform: str
    min_send_interval: timedelta = timedelta(0)
    calls: list[RecordedCall] = field(default_factory=list)
    failures: list[DeliveryError] = field(default_factory=list)
    healthy: bool = True
    _ids: count[int] = field(default_factory=lambda: count(1))

    async def start(self, sink: VoteSink) -> None:
        self.sink = sink

    async def stop(self) -> None:
        return None

    async def check_health(self) -> bool:
        return self.healthy

    def _maybe_fail(self) -> None:
        if self.failures:
            raise self.failures.pop(0)

    async def send(self, card: ApprovalCard, destination: Destination) -> MessageRef:
        self._maybe_fail()
        self.calls.append(RecordedCall("send", destination.key, card))
        return MessageRef(self.platform, {"target": destination.key, "message": next(self._ids)})

    async def edit(self, ref: MessageRef, card: ApprovalCard) -> None:
        self._maybe_fail()
        self.calls.append(RecordedCall("edit", str(ref.data["target"]), card))

    async def reply(self, ref: MessageRef, card: ApprovalCard, text: str) -> None:
        self._maybe_fail()
        self.calls.append(RecordedCall("reply", str(ref.data["target"]), card, text))

    def kinds(self) -> list[tuple[str, str]]:
        return [(call.kind, call.destination) for call in self.calls]


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on 127.0.0.1 at a free port; returns the runner (``cleanup()`` it) and
    the base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    port = server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"
