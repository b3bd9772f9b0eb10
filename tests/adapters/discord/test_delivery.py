"""Delivery through the outbox: Discord errors translated, 429 and rate-limit buckets honoured."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord import DiscordAdapter, build_discord_adapter
from approvals.card import build_card
from approvals.directory import Destination, DestinationKind
from approvals.model import CreateCommand
from approvals.ports import Adapter, DeliveryError, MessageRef
from config.schema import DiscordSettings
from tests.adapters.discord.conftest import BOT_TOKEN, CHANNEL, PUBLIC_URL
from tests.fakes.discord import Fault

CHANNEL_DEST = Destination("discord", DestinationKind.CHANNEL, CHANNEL)


async def a_card(world):
    return build_card(await world.create())


async def test_the_adapter_fulfils_the_adapter_protocol(discord_world):
    adapter = discord_world.adapter
    assert isinstance(adapter, Adapter)
    assert adapter.platform == "discord"
    assert await adapter.check_health()


async def test_429_with_via_is_waited_out_by_discord_py(discord_world):
    world = discord_world
    card = await a_card(world)
    world.fake.fail_next("create_message", Fault(429, retry_after=0.3, via=True))
    ref = await world.adapter.send(card, CHANNEL_DEST)
    first, second = world.fake.calls_to("create_message")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.3 - 0.01  # retry_after from the body was honoured
    assert ref.data["message_id"] == world.fake.cards_in(CHANNEL)[0].id


async def test_429_without_via_becomes_retry_after(discord_world):
    world = discord_world
    card = await a_card(world)
    world.fake.fail_next("create_message", Fault(429, retry_after=2, via=False))
    with pytest.raises(DeliveryError) as caught:
        await world.adapter.send(card, CHANNEL_DEST)
    assert caught.value.retry_after == timedelta(seconds=2)
    assert not caught.value.permanent
    assert len(world.fake.calls_to("create_message")) == 1


async def test_long_429_is_left_to_the_outbox(discord_world):
    world = discord_world
    card = await a_card(world)
    world.fake.fail_next("create_message", Fault(429, retry_after=45, via=True))
    with pytest.raises(DeliveryError) as caught:
        await world.adapter.send(card, CHANNEL_DEST)
    assert caught.value.retry_after == timedelta(seconds=45)
    assert len(world.fake.calls_to("create_message")) == 1


@pytest.mark.parametrize("status", [503, 501])
async def test_server_errors_are_transient(discord_world, status):
    world = discord_world
    card = await a_card(world)
    world.fake.fail_next("create_message", Fault(status))
    with pytest.raises(DeliveryError) as caught:
        await world.adapter.send(card, CHANNEL_DEST)
    assert not caught.value.permanent
    assert caught.value.retry_after is None


async def test_a_500_is_retried_by_discord_py(discord_world):
    world = discord_world
    card = await a_card(world)
    world.fake.fail_next("create_message", Fault(500))
    await world.adapter.send(card, CHANNEL_DEST)  # discord.py waits 1 s and tries again
    assert [c.status for c in world.fake.calls_to("create_message")] == [500, 200]


@pytest.mark.parametrize("trouble", ["missing", "forbidden"])
async def test_channel_trouble_is_permanent(discord_world, trouble):
    world = discord_world
    card = await a_card(world)
    if trouble == "missing":
        world.fake.missing_channels.add(CHANNEL)
    else:
        world.fake.forbidden_channels.add(CHANNEL)
    with pytest.raises(DeliveryError) as caught:
        await world.adapter.send(card, CHANNEL_DEST)
    assert caught.value.permanent


async def test_edit_of_a_deleted_message_or_a_bad_ref_is_permanent(discord_world):
    world = discord_world
    card = await a_card(world)
    with pytest.raises(DeliveryError) as caught:
        await world.adapter.edit(
            MessageRef("discord", {"channel_id": CHANNEL, "message_id": "123"}), card
        )
    assert caught.value.permanent
    for data in ({"channel": CHANNEL, "ts": "1.2"}, {"channel_id": "x", "message_id": "1"}):
        with pytest.raises(DeliveryError) as caught:
            await world.adapter.edit(MessageRef("discord", data), card)
        assert caught.value.permanent


async def test_a_bad_channel_id_is_permanent(discord_world):
    card = await a_card(discord_world)
    bad = Destination("discord", DestinationKind.CHANNEL, "ops")
    with pytest.raises(DeliveryError) as caught:
        await discord_world.adapter.send(card, bad)
    assert caught.value.permanent


async def test_network_errors_are_transient_and_health_says_so(discord_world):
    world = discord_world
    card = await a_card(world)
    # discord.py reads its REST base from Route.BASE on every call: point it at nothing.
    Route.BASE = "http://127.0.0.1:9/api/v10"  # discard port: nothing listens
    with pytest.raises(DeliveryError) as caught:
        await world.adapter.send(card, CHANNEL_DEST)
    assert not caught.value.permanent
    assert not await world.adapter.check_health()


async def test_send_before_start_is_transient(sqlite_service):
    adapter = DiscordAdapter(bot_token=BOT_TOKEN, public_url=PUBLIC_URL)
    card = build_card(
        (await sqlite_service.create(CreateCommand("bot", "deploy.web", "t"))).request
    )
    with pytest.raises(DeliveryError) as caught:
        await adapter.send(card, CHANNEL_DEST)
    assert not caught.value.permanent
    assert not await adapter.check_health()


async def test_server_error_is_retried_by_the_outbox(discord_world):
    world = discord_world
    request = await world.create()
    world.fake.fail_next("create_message", Fault(503))
    await world.deliver()
    assert world.fake.cards_in(CHANNEL) == []
    world.clock.advance(timedelta(minutes=1))
    await world.deliver()
    assert (await world.card(request.id)).buttons


async def test_missing_channel_is_dead_lettered_not_retried(discord_world):
    world = discord_world
    request = await world.create()
    world.fake.missing_channels.add(CHANNEL)
    await world.deliver()
    world.clock.advance(timedelta(hours=1))
    await world.deliver()
    assert len(world.fake.calls_to("create_message")) == 1
    kinds = [e.kind for e in await world.audit(request.id)]
    assert "delivery_failed" in kinds


async def test_build_discord_adapter_honours_the_urls_and_puts_them_back(
    fake_discord, sqlite_service
):
    before = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    settings = DiscordSettings(
        bot_token=BOT_TOKEN, api_url=fake_discord.api_url, gateway_url=fake_discord.gateway_url
    )
    adapter = build_discord_adapter(settings, public_url=PUBLIC_URL)
    assert adapter.min_send_interval == timedelta(0)  # discord.py keeps to the buckets
    await adapter.start(sqlite_service)
    try:
        assert fake_discord.api_url == Route.BASE
        assert str(DiscordWebSocket.DEFAULT_GATEWAY) == fake_discord.gateway_url
        assert await adapter.check_health()
        assert fake_discord.identifies == 1
        assert [c.route for c in fake_discord.calls[:2]] == ["me", "application"]
    finally:
        await adapter.stop()
    assert before == (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    assert not await adapter.check_health()


async def test_a_wrong_token_fails_the_start_and_never_connects(fake_discord, sqlite_service):
    adapter = DiscordAdapter(
        bot_token="not-the-token",
        public_url=PUBLIC_URL,
        api_url=fake_discord.api_url,
        gateway_url=fake_discord.gateway_url,
        connect_timeout=5,
    )
    with pytest.raises(RuntimeError, match="refused the bot token"):
        await adapter.start(sqlite_service)
    assert not await adapter.check_health()
    assert fake_discord.identifies == 0
    await adapter.stop()  # stopping again is harmless


async def test_login_is_retried_when_discord_is_down_at_start(fake_discord, sqlite_service):
    fake_discord.fail_next("me", Fault(503))
    adapter = DiscordAdapter(
        bot_token=BOT_TOKEN,
        public_url=PUBLIC_URL,
        api_url=fake_discord.api_url,
        gateway_url=fake_discord.gateway_url,
        guild_ready_timeout=0.05,
        connect_timeout=10,
    )
    await adapter.start(sqlite_service)
    try:
        assert [c.status for c in fake_discord.calls_to("me")][:2] == [503, 200]
        assert await adapter.check_health()
    finally:
        await adapter.stop()


async def test_stop_does_not_wait_out_the_login_backoff(sqlite_service):
    adapter = DiscordAdapter(
        bot_token=BOT_TOKEN,
        public_url=PUBLIC_URL,
        api_url="http://127.0.0.1:9/api/v10",  # discard port: nothing listens
        gateway_url="ws://127.0.0.1:9/gateway",
        connect_timeout=0.2,
    )
    await adapter.start(sqlite_service)
    assert not await adapter.check_health()
    began = asyncio.get_running_loop().time()
    await adapter.stop()
    assert asyncio.get_running_loop().time() - began < 1
