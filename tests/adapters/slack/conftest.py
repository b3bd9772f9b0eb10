"""A Slack world for scenario tests: the fake Slack, the real adapter, the service and outbox.

``slack`` runs each test in HTTP mode (signed posts to ``/slack/events`` on a FastAPI app,
through httpx's ASGI transport) and in Socket Mode (envelopes over the fake's websocket),
on each store of the root ``store`` fixture.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from adapters.slack import SlackAdapter
from approvals.clock import Clock, ManualClock
from approvals.policy import PolicySet
from approvals.service import ApprovalService, Rules
from bot.runtime import Runtime
from tests.adapters.world import ChatWorld, scenario_policies
from tests.fakes.slack import FakeSlack, Message
from tests.waiting import wait_for
from tests.world import make_directory

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-signoff-test"
APP_TOKEN = "xapp-1-signoff-test"
PUBLIC_URL = "http://127.0.0.1:8080"
CHANNEL = "C0OPS"
CHANNEL_KEY = f"slack:channel:{CHANNEL}"
ALICE, BOB, DAVE = "U0ALICE", "U0BOB", "U0DAVE"
STRANGER = "U0STRANGER"
MIN = timedelta(minutes=1)
RAW_MARKUP = re.compile(r"<(?!" + re.escape(PUBLIC_URL) + r"/requests/)")
"""Any ``<`` that does not open our own inbox link: raw mention or link syntax (B6)."""


def slack_policies() -> PolicySet:
    """Policies whose cards all go to Slack (the ops-slack channel, or approvers' DMs)."""
    return scenario_policies(
        "ops-slack",
        pair=("alice", "bob", "dave"),
        first="bob",
        escalation="dave",
        everyone=("alice", "bob"),
    )


@pytest.fixture
def rules() -> Rules:
    return Rules(policies=slack_policies(), directory=make_directory())


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN, signing_secret=SIGNING_SECRET)
    await fake.start()
    yield fake
    await fake.close()


async def start_adapter(
    fake: FakeSlack,
    service: ApprovalService,
    mode: str,
    *,
    min_send_interval: timedelta = timedelta(0),
) -> SlackAdapter:
    """A started adapter wired like the application wires it, clicks routed from ``fake``."""
    adapter = SlackAdapter(
        bot_token=BOT_TOKEN,
        public_url=PUBLIC_URL,
        mode="socket" if mode == "socket" else "http",
        signing_secret=SIGNING_SECRET if mode == "http" else None,
        app_token=APP_TOKEN,
        api_url=fake.api_url,
        min_send_interval=min_send_interval,
    )
    fake.mode = mode
    if mode == "http":
        app = FastAPI()
        app.include_router(adapter.router())
        if fake.events is not None:
            await fake.events.aclose()
        fake.events = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        )
    await adapter.start(service)
    if mode == "socket":
        await wait_for(_connected(fake))
    return adapter


def _connected(fake: FakeSlack) -> Any:
    async def check() -> bool:
        return fake.connected >= 1

    return check


@dataclass
class SlackWorld(ChatWorld):
    fake: FakeSlack
    adapter: SlackAdapter
    mode: str
    _adapters: list[SlackAdapter] = field(default_factory=list)

    async def ref(self, request_id: str, destination: str = CHANNEL_KEY) -> dict[str, Any]:
        return await super().ref(request_id, destination)

    async def card(self, request_id: str, destination: str = CHANNEL_KEY) -> Message:
        ref = await self.ref(request_id, destination)
        return self.fake.messages[(ref["channel"], ref["ts"])]

    async def posted(self, action: str = "deploy.web", **extra: Any) -> tuple[str, Message]:
        """A new request, its card delivered; returns (request id, card)."""
        request = await self.create(action, **extra)
        await self.deliver()
        return request.id, await self.card(request.id)

    async def restart_adapter(self) -> SlackAdapter:
        """Stop the adapter and start a fresh one, as a process restart would."""
        await self.adapter.stop()
        self.adapter = await start_adapter(self.fake, self.service, self.mode)
        self._adapters.append(self.adapter)
        self.dispatcher.use_adapter("slack", self.adapter)
        return self.adapter

    async def close(self) -> None:
        for adapter in self._adapters:
            await adapter.stop()
        if self.fake.events is not None:
            await self.fake.events.aclose()
            self.fake.events = None


async def _world(mode: str, fake: FakeSlack, runtime: Runtime, clock: Clock) -> SlackWorld:
    adapter = await start_adapter(fake, runtime.service, mode)
    runtime.dispatcher.use_adapter("slack", adapter)
    return SlackWorld(
        fake=fake,
        service=runtime.service,
        store=runtime.store,
        clock=clock,
        adapter=adapter,
        dispatcher=runtime.dispatcher,
        mode=mode,
        _adapters=[adapter],
    )


@pytest.fixture(params=["http", "socket"])
async def slack(
    request: pytest.FixtureRequest,
    fake_slack: FakeSlack,
    runtime: Runtime,
    clock: ManualClock,
) -> AsyncIterator[SlackWorld]:
    """The Slack world in HTTP mode and in Socket Mode."""
    world = await _world(request.param, fake_slack, runtime, clock)
    yield world
    await world.close()


@pytest.fixture
async def http_slack(
    fake_slack: FakeSlack, runtime: Runtime, clock: ManualClock
) -> AsyncIterator[SlackWorld]:
    """The Slack world in HTTP mode only (signature checks)."""
    world = await _world("http", fake_slack, runtime, clock)
    yield world
    await world.close()


@pytest.fixture
async def socket_slack(
    fake_slack: FakeSlack, runtime: Runtime, clock: ManualClock
) -> AsyncIterator[SlackWorld]:
    """The Slack world in Socket Mode only (connection handling)."""
    world = await _world("socket", fake_slack, runtime, clock)
    yield world
    await world.close()
