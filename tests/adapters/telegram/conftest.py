"""Fixtures for the Telegram scenarios: the fake Bot API, and signoff's Telegram adapter
(real python-telegram-bot) in polling or webhook mode, with the service and the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from adapters.telegram import TelegramAdapter
from approvals.describe import DescribeTemplate
from approvals.model import ApprovalRequest, CreateCommand
from approvals.outbox import OutboxDispatcher
from approvals.outcomes import Created
from approvals.policy import Level, Match, Policy, PolicySet, Risk, TimeoutOutcome
from approvals.ports import Adapter
from approvals.service import Rules
from bot.runtime import Runtime
from tests.fakes.recording import RecordingAdapter
from tests.fakes.telegram import TOKEN, FakeBotApi, FakeMessage
from tests.waiting import wait_for
from tests.world import make_directory

GROUP = -1001234
"""The ops-telegram channel of the test directory."""
ALICE, BOB, ERIN, STRANGER = 100001, 100002, 100005, 100009
SLACK_DAVE = "U0DAVE"
SLACK_ALICE = "U0ALICE"
WEBHOOK_SECRET = "s3cret-token_for-tests"
MIN = timedelta(minutes=1)


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    # python-telegram-bot warns when RetryAfter.retry_after is read as seconds.
    monkeypatch.setenv("PTB_TIMEDELTA", "1")


def telegram_policies() -> PolicySet:
    """Policies whose cards go to the Telegram group (and Slack, for the quorum)."""
    return PolicySet(
        (
            Policy(
                name="prod-db",
                match=Match(actions=("db.*",)),
                quorum=2,
                levels=(
                    Level(
                        approvers=("alice", "bob", "dave"),
                        notify=("ops-telegram", "ops-slack"),
                        timeout=30 * MIN,
                    ),
                ),
            ),
            Policy(
                name="secrets",
                match=Match(actions=("secrets.*",)),
                require_reason=True,
                levels=(
                    Level(approvers=("alice", "bob"), notify=("ops-telegram",), timeout=30 * MIN),
                ),
            ),
            Policy(
                name="wire",
                match=Match(actions=("wire.*",)),
                risk=Risk.CRITICAL,
                describe=DescribeTemplate.parse("Wire {params.amount} EUR to {params.iban}"),
                levels=(
                    Level(approvers=("alice", "bob"), notify=("ops-telegram",), timeout=30 * MIN),
                ),
            ),
            Policy(
                name="direct",
                match=Match(actions=("dm.*",)),
                levels=(Level(approvers=("alice", "erin"), notify=("dm",), timeout=30 * MIN),),
            ),
            Policy(
                name="deploy",
                levels=(
                    Level(
                        approvers=("alice", "bob"),
                        notify=("ops-telegram",),
                        timeout=30 * MIN,
                        remind_every=10 * MIN,
                    ),
                ),
                on_timeout=TimeoutOutcome.DENY,
            ),
        )
    )


@pytest.fixture
def rules() -> Rules:
    return Rules(policies=telegram_policies(), directory=make_directory())


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotApi]:
    api = FakeBotApi()
    api.add_group(GROUP, "ops")
    api.add_user(ALICE, "Alice")
    api.add_user(BOB, "Bob")
    api.add_user(ERIN, "Erin", started=False)
    api.add_user(STRANGER, "Mallory")
    await api.start()
    yield api
    await api.close()


class _TestServer(uvicorn.Server):
    """uvicorn inside the test's event loop; pytest keeps its own signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class TelegramHarness:
    """The runtime's service and outbox with the Telegram adapter, against the fake Bot API
    (cards to Slack and Discord go to recording adapters).

    In webhook mode a uvicorn server on 127.0.0.1 serves the adapter's router; the fake
    posts updates to it.
    """

    def __init__(
        self,
        *,
        mode: str,
        fake: FakeBotApi,
        runtime: Runtime,
        adapter_options: dict[str, Any] | None = None,
    ) -> None:
        self.mode = mode
        self.fake = fake
        self.runtime = runtime
        self.store = runtime.store
        self.service = runtime.service
        self.clock = runtime.service.clock
        self.slack = RecordingAdapter("slack")
        self.discord = RecordingAdapter("discord")
        self.adapter_options = {
            "min_send_interval": timedelta(0),
            # Scenarios read the outcome in the toast; on a busy machine a vote can take
            # longer than the production budget, and the toast would say "received".
            "ack_budget": timedelta(seconds=10),
            **(adapter_options or {}),
        }
        self.adapter: TelegramAdapter | None = None
        self._http: FastAPI | None = None
        self._server: _TestServer | None = None
        self._serving: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.public_url = "http://127.0.0.1:9"  # no server in polling mode

    async def __aenter__(self) -> TelegramHarness:
        if self.mode == "webhook":
            await self._serve()
        await self.start_adapter()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop_adapter()
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._serving, timeout=10)
        if self._socket is not None:
            self._socket.close()

    async def _asgi(self, scope: Any, receive: Any, send: Any) -> None:
        if self._http is None:
            return
        await self._http(scope, receive, send)

    async def _serve(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._socket = sock
        self.public_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            self._asgi,
            log_level="warning",
            lifespan="off",
            ws="none",
            http="h11",
            interface="asgi3",
        )
        self._server = _TestServer(config)
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        server = self._server
        serving = self._serving

        async def started() -> bool:
            if serving.done():
                pytest.fail(f"the webhook server stopped while starting: {serving.exception()!r}")
            return server.started

        await wait_for(started, within=10, poll=0.01)

    def build_adapter(self) -> TelegramAdapter:
        return TelegramAdapter(
            token=TOKEN,
            public_url=self.public_url,
            mode="webhook" if self.mode == "webhook" else "polling",
            webhook_secret=WEBHOOK_SECRET if self.mode == "webhook" else None,
            api_url=self.fake.base_url,
            poll_timeout=timedelta(seconds=2),
            **self.adapter_options,
        )

    async def start_adapter(self) -> TelegramAdapter:
        adapter = self.build_adapter()
        app = FastAPI()
        app.include_router(adapter.router())
        self._http = app
        await adapter.start(self.service)
        self.adapter = adapter
        return adapter

    async def stop_adapter(self) -> None:
        if self.adapter is not None:
            await self.adapter.stop()
            self.adapter = None

    async def restart(self) -> TelegramAdapter:
        """The process goes away and comes back: a new adapter, nothing kept in memory."""
        await self.stop_adapter()
        return await self.start_adapter()

    @property
    def dispatcher(self) -> OutboxDispatcher:
        """The runtime's outbox dispatcher, delivering through this harness's adapters."""
        assert self.adapter is not None
        dispatcher = self.runtime.dispatcher
        adapters: dict[str, Adapter] = {
            "telegram": self.adapter,
            "slack": self.slack,
            "discord": self.discord,
        }
        for platform, adapter in adapters.items():
            dispatcher.use_adapter(platform, adapter)
        return dispatcher

    async def deliver(self) -> int:
        """Send everything the outbox holds now."""
        return await self.dispatcher.drain()

    async def create(self, action: str = "deploy.web", **fields: Any) -> ApprovalRequest:
        command = CreateCommand(
            agent=fields.pop("agent", "deploy-bot"),
            action=action,
            title=fields.pop("title", "Deploy web to production"),
            params=fields.pop("params", {"env": "prod", "version": "1.2.3"}),
            **fields,
        )
        outcome = await self.service.create(command)
        assert isinstance(outcome, Created), outcome
        return outcome.request

    async def posted_card(self, request: ApprovalRequest, chat_id: int = GROUP) -> FakeMessage:
        """Deliver the outbox and return the card the fake received for ``request``."""
        await self.deliver()
        card = self.fake.card_for(request.id, chat_id)
        assert card is not None, f"no card for {request.id} in chat {chat_id}"
        return copy.deepcopy(card)  # as the person's client shows it, buttons and all

    async def click(self, user_id: int, card: FakeMessage, label: str) -> str:
        """Press the button labelled ``label``; returns the toast text once answered."""
        update = await self.fake.click(user_id, card, card.button_data(label))
        return await self.toast(update)

    async def toast(self, update: dict[str, Any]) -> str:
        return str(await self.fake.until(lambda: self.fake.answer_to(update)))


@pytest.fixture(params=["polling", "webhook"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def adapter_options() -> dict[str, Any]:
    """Extra TelegramAdapter arguments (a module overrides this to change limits)."""
    return {}


@pytest.fixture
async def telegram(
    mode: str,
    fake: FakeBotApi,
    runtime: Runtime,
    adapter_options: dict[str, Any],
) -> AsyncIterator[TelegramHarness]:
    async with TelegramHarness(
        mode=mode, fake=fake, runtime=runtime, adapter_options=adapter_options
    ) as harness:
        yield harness
