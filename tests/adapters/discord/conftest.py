"""A Discord world for scenario tests: the fake Discord, the real adapter, the service, the outbox.

The real discord.py logs in to the fake's REST API and holds its gateway websocket; clicks
are ``INTERACTION_CREATE`` dispatches on that socket. discord.py keeps its REST base and
gateway URL in class attributes, so every test here puts them back afterwards.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord import DiscordAdapter
from approvals.clock import ManualClock
from approvals.policy import PolicySet
from approvals.service import ApprovalService, Rules
from bot.runtime import Runtime
from tests.adapters.world import ChatWorld, scenario_policies
from tests.fakes.discord import FakeDiscord, Interaction, Message
from tests.world import make_directory

BOT_TOKEN = "discord-bot-token-for-tests"
PUBLIC_URL = "http://127.0.0.1:8080"
CHANNEL = "300001"
CHANNEL_KEY = f"discord:channel:{CHANNEL}"
ALICE, CAROL = "200001", "200003"
STRANGER = "299999"
MIN = timedelta(minutes=1)
RAW_MENTION = re.compile(r"@(everyone|here)|(?<!\\)<(@[!&]?|#)\w+>")
"""Mention syntax Discord would act on (B6): ``@everyone``, ``@here``, ``<@id>``, ``<#id>``."""


def discord_policies() -> PolicySet:
    """Policies whose cards all go to Discord (the ops-discord channel, or approvers' DMs)."""
    return scenario_policies(
        "ops-discord",
        pair=("alice", "bob", "carol"),
        first="alice",
        escalation="carol",
        everyone=("alice", "bob", "carol"),
    )


@pytest.fixture(autouse=True)
def _discord_endpoints() -> Iterator[None]:
    """Put discord.py's process-wide REST base and gateway URL back after each test."""
    base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


@pytest.fixture
def rules() -> Rules:
    return Rules(policies=discord_policies(), directory=make_directory())


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord(bot_token=BOT_TOKEN)
    await fake.start()
    yield fake
    await fake.close()


def new_adapter(
    fake: FakeDiscord,
    service: ApprovalService,
    *,
    min_send_interval: timedelta = timedelta(0),
    api_url: str | None = None,
) -> DiscordAdapter:
    return DiscordAdapter(
        bot_token=BOT_TOKEN,
        public_url=PUBLIC_URL,
        api_url=fake.api_url if api_url is None else api_url,
        gateway_url=fake.gateway_url,
        min_send_interval=min_send_interval,
        guild_ready_timeout=0.05,
    )


async def start_adapter(
    fake: FakeDiscord, service: ApprovalService, *, min_send_interval: timedelta = timedelta(0)
) -> DiscordAdapter:
    """A started adapter, connected to the fake's gateway and ready."""
    adapter = new_adapter(fake, service, min_send_interval=min_send_interval)
    await adapter.start(service)
    assert await adapter.check_health()
    return adapter


def answered(interaction: Interaction) -> Callable[[], Any]:
    async def check() -> bool:
        return interaction.answered

    return check


@dataclass
class DiscordWorld(ChatWorld):
    fake: FakeDiscord
    adapter: DiscordAdapter
    _adapters: list[DiscordAdapter] = field(default_factory=list)

    async def ref(self, request_id: str, destination: str = CHANNEL_KEY) -> dict[str, Any]:
        return await super().ref(request_id, destination)

    async def card(self, request_id: str, destination: str = CHANNEL_KEY) -> Message:
        ref = await self.ref(request_id, destination)
        return self.fake.messages[(ref["channel_id"], ref["message_id"])]

    async def posted(self, action: str = "deploy.web", **extra: Any) -> tuple[str, Message]:
        """A new request, its card delivered; returns (request id, card)."""
        request = await self.create(action, **extra)
        await self.deliver()
        return request.id, await self.card(request.id)

    def told(self, user: str, words: str) -> Callable[[], Any]:
        async def check() -> bool:
            return any(words in text for text in self.fake.ephemerals_for(user))

        return check

    async def restart_adapter(self) -> DiscordAdapter:
        """Stop the adapter and start a fresh one, as a process restart would."""
        await self.adapter.stop()
        self.adapter = await start_adapter(self.fake, self.service)
        self._adapters.append(self.adapter)
        self.dispatcher.use_adapter("discord", self.adapter)
        return self.adapter

    async def close(self) -> None:
        for adapter in self._adapters:
            await adapter.stop()


@pytest.fixture
async def discord_world(
    fake_discord: FakeDiscord, runtime: Runtime, clock: ManualClock
) -> AsyncIterator[DiscordWorld]:
    adapter = await start_adapter(fake_discord, runtime.service)
    runtime.dispatcher.use_adapter("discord", adapter)
    world = DiscordWorld(
        fake=fake_discord,
        service=runtime.service,
        store=runtime.store,
        clock=clock,
        adapter=adapter,
        dispatcher=runtime.dispatcher,
        _adapters=[adapter],
    )
    yield world
    await world.close()
