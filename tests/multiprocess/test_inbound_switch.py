"""Each one-per-token inbound connection opens and closes on its own, while sending goes on.

What the singleton locks rely on, adapter by adapter, against the platform fakes: started
with ``inbound=False`` the adapter sends cards but holds no connection (and reports itself
healthy); ``start_inbound`` opens it and clicks arrive; ``stop_inbound`` closes it at once
and sending still works; opening it again works too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.slack import SlackAdapter
from adapters.telegram import TelegramAdapter
from approvals.machine import Status
from approvals.model import CreateCommand
from approvals.outcomes import Created
from approvals.policy import Level, Match, Policy, PolicySet
from approvals.service import ApprovalService, Rules
from tests.adapters.discord.conftest import new_adapter as new_discord_adapter
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack
from tests.multiprocess.conftest import TELEGRAM_TOKEN, PollWatchingBotApi
from tests.waiting import wait_for
from tests.world import build_test_runtime, deliver_through

DISCORD_TOKEN = "discord-bot-token-for-tests"


async def _true(value: object) -> bool:
    return bool(value)


async def create(service: ApprovalService, action: str) -> str:
    outcome = await service.create(CreateCommand(agent="deploy-bot", action=action, title="Go"))
    assert isinstance(outcome, Created)
    return outcome.request.id


def status_is(service: ApprovalService, request_id: str, status: Status):
    async def check() -> bool:
        request = await service.get(request_id)
        return request is not None and request.status is status

    return check


@pytest.fixture(autouse=True)
def _discord_endpoints() -> Iterator[None]:
    """discord.py keeps its endpoints in class attributes: put them back afterwards."""
    base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord(bot_token=DISCORD_TOKEN)
    await fake.start()
    yield fake
    await fake.close()


async def test_discord_gateway_switches_on_and_off_while_cards_go_out(
    fake_discord, sqlite_runtime, sqlite_service, clock
):
    runtime, service = sqlite_runtime, sqlite_service
    adapter = new_discord_adapter(fake_discord, service)
    await adapter.start(service, inbound=False)
    try:
        assert adapter.inbound_is_singleton
        assert fake_discord.connected == 0
        assert await adapter.check_health()
        request_id = await create(service, "cache.flush")  # policy "expiring": ops-discord
        await deliver_through(runtime, {"discord": adapter}).drain()
        [card] = fake_discord.cards_in("300001")
        assert fake_discord.connected == 0

        await adapter.start_inbound()
        await wait_for(lambda: _true(fake_discord.connected == 1), within=10)
        await wait_for(adapter.check_health, within=10)
        await fake_discord.click(card, user="200001", label="Approve")
        await wait_for(status_is(service, request_id, Status.APPROVED), within=10)

        await adapter.stop_inbound()
        await wait_for(lambda: _true(fake_discord.connected == 0), within=5)
        assert await adapter.check_health()  # the login, and so sending, stays
        await deliver_through(runtime, {"discord": adapter}).drain()
        assert not fake_discord.cards_in("300001")[0].buttons  # edited after the vote

        await adapter.start_inbound()
        await wait_for(lambda: _true(fake_discord.connected == 1), within=10)
        assert fake_discord.identifies == 2
    finally:
        await adapter.stop()
    assert fake_discord.connected == 0


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(bot_token="xoxb-test", app_token="xapp-test", signing_secret="secret")
    fake.mode = "socket"
    await fake.start()
    yield fake
    await fake.close()


async def test_slack_socket_mode_switches_on_and_off_while_cards_go_out(
    fake_slack, sqlite_runtime, sqlite_service, clock
):
    runtime, service = sqlite_runtime, sqlite_service
    adapter = SlackAdapter(
        bot_token="xoxb-test",
        public_url="http://127.0.0.1:8080",
        mode="socket",
        app_token="xapp-test",
        api_url=fake_slack.api_url,
    )
    await adapter.start(service, inbound=False)
    try:
        assert adapter.inbound_is_singleton
        assert fake_slack.connected == 0
        assert await adapter.check_health()
        request_id = await create(service, "deploy.web")  # policy "default": ops-slack
        await deliver_through(runtime, {"slack": adapter}).drain()
        [card] = fake_slack.posts_in("C0OPS")

        await adapter.start_inbound()
        await wait_for(lambda: _true(fake_slack.connected == 1), within=10)
        await wait_for(adapter.check_health, within=10)
        ack = await fake_slack.click(card, user="U0ALICE", action_id="signoff_approve")
        assert ack["envelope_id"]
        await wait_for(status_is(service, request_id, Status.APPROVED), within=10)

        await adapter.stop_inbound()
        await wait_for(lambda: _true(fake_slack.connected == 0), within=5)
        assert await adapter.check_health()
        await adapter.start_inbound()
        await wait_for(lambda: _true(fake_slack.connected == 1), within=10)
    finally:
        await adapter.stop()


@pytest.fixture
async def fake_telegram() -> AsyncIterator[PollWatchingBotApi]:
    api = PollWatchingBotApi()
    api.add_group(-1001234, "ops")
    api.add_user(100001, "Alice")
    await api.start()
    yield api
    await api.close()


async def test_telegram_polling_switches_on_and_off_and_keeps_what_came_meanwhile(
    fake_telegram, sqlite_store, clock, rules
):
    telegram_rules = Rules(
        policies=PolicySet(
            (
                Policy(
                    name="telegram",
                    match=Match(),
                    levels=(
                        Level(
                            approvers=("alice",),
                            notify=("ops-telegram",),
                            timeout=timedelta(minutes=30),
                        ),
                    ),
                ),
            )
        ),
        directory=rules.directory,
    )
    runtime = build_test_runtime(sqlite_store, clock, telegram_rules)
    service = runtime.service
    adapter = TelegramAdapter(
        token=TELEGRAM_TOKEN,
        public_url="http://127.0.0.1:9",
        api_url=fake_telegram.base_url,
        poll_timeout=timedelta(seconds=2),
        min_send_interval=timedelta(0),
    )
    await adapter.start(service, inbound=False)
    try:
        assert adapter.inbound_is_singleton
        assert await adapter.check_health()
        first = await create(service, "deploy.web")
        second = await create(service, "deploy.api")
        await deliver_through(runtime, {"telegram": adapter}).drain()
        first_card = fake_telegram.card_for(first, -1001234)
        second_card = fake_telegram.card_for(second, -1001234)
        assert first_card is not None
        assert second_card is not None
        assert fake_telegram.polls_started == 0

        await adapter.start_inbound()
        update = await fake_telegram.click(100001, first_card, first_card.button_data("Approve"))
        await wait_for(status_is(service, first, Status.APPROVED), within=10)
        assert await fake_telegram.until(lambda: fake_telegram.answer_to(update))

        await adapter.stop_inbound()
        polls = fake_telegram.polls_started
        meanwhile = await fake_telegram.click(
            100001, second_card, second_card.button_data("Approve")
        )
        assert fake_telegram.pending_updates == 1
        assert fake_telegram.polls_started == polls  # nobody asks for it
        current = await service.get(second)
        assert current is not None
        assert current.status is Status.PENDING

        await adapter.start_inbound()
        await wait_for(status_is(service, second, Status.APPROVED), within=10)
        await fake_telegram.until(lambda: fake_telegram.answer_to(meanwhile))
        assert fake_telegram.answers_to(meanwhile) == 1
    finally:
        await adapter.stop()
