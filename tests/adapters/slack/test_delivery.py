"""Delivery through the outbox: Slack errors translated, 429 honoured, the per-channel rate held."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.routing import APIRoute

from adapters.slack import SlackAdapter, build_slack_adapter
from approvals.card import build_card
from approvals.directory import Destination, DestinationKind
from approvals.model import CreateCommand
from approvals.ports import Adapter, DeliveryError, MessageRef
from config.schema import SlackSettings
from tests.adapters.slack.conftest import (
    BOT_TOKEN,
    CHANNEL,
    PUBLIC_URL,
    SIGNING_SECRET,
)
from tests.fakes.slack import Fault

CHANNEL_DEST = Destination("slack", DestinationKind.CHANNEL, CHANNEL)


async def a_card(slack):
    return build_card(await slack.create())


async def test_the_adapter_fulfils_the_adapter_protocol(http_slack):
    assert isinstance(http_slack.adapter, Adapter)
    assert http_slack.adapter.platform == "slack"
    assert await http_slack.adapter.check_health()


async def test_429_becomes_retry_after(http_slack):
    card = await a_card(http_slack)
    http_slack.fake.fail_next("chat.postMessage", Fault(429, "ratelimited", retry_after=2))
    with pytest.raises(DeliveryError) as caught:
        await http_slack.adapter.send(card, CHANNEL_DEST)
    assert caught.value.retry_after == timedelta(seconds=2)
    assert not caught.value.permanent


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_transient(http_slack, status):
    card = await a_card(http_slack)
    http_slack.fake.fail_next("chat.postMessage", Fault(status))
    with pytest.raises(DeliveryError) as caught:
        await http_slack.adapter.send(card, CHANNEL_DEST)
    assert not caught.value.permanent
    assert caught.value.retry_after is None


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "is_archived"])
async def test_channel_trouble_is_permanent(http_slack, error):
    card = await a_card(http_slack)
    http_slack.fake.fail_next("chat.postMessage", Fault(200, error))
    with pytest.raises(DeliveryError) as caught:
        await http_slack.adapter.send(card, CHANNEL_DEST)
    assert caught.value.permanent


async def test_edit_of_a_deleted_message_is_permanent(http_slack):
    card = await a_card(http_slack)
    with pytest.raises(DeliveryError) as caught:
        await http_slack.adapter.edit(MessageRef("slack", {"channel": CHANNEL, "ts": "1.2"}), card)
    assert caught.value.permanent
    with pytest.raises(DeliveryError) as caught:
        await http_slack.adapter.edit(MessageRef("slack", {"message": 5}), card)
    assert caught.value.permanent


async def test_network_errors_are_transient_and_health_says_so(sqlite_service):
    service = sqlite_service
    adapter = SlackAdapter(
        bot_token=BOT_TOKEN,
        public_url=PUBLIC_URL,
        signing_secret=SIGNING_SECRET,
        api_url="http://127.0.0.1:9/api/",  # discard port: nothing listens
    )
    await adapter.start(service)
    try:
        card = build_card((await service.create(CreateCommand("bot", "deploy.web", "t"))).request)
        with pytest.raises(DeliveryError) as caught:
            await adapter.send(card, CHANNEL_DEST)
        assert not caught.value.permanent
        assert not await adapter.check_health()
    finally:
        await adapter.stop()


async def test_server_error_is_retried_by_the_outbox(http_slack):
    request = await http_slack.create()
    http_slack.fake.fail_next("chat.postMessage", Fault(503))
    await http_slack.deliver()
    assert http_slack.fake.posts_in(CHANNEL) == []
    http_slack.clock.advance(timedelta(minutes=1))
    await http_slack.deliver()
    assert (await http_slack.card(request.id)).buttons


async def test_archived_channel_is_dead_lettered_not_retried(http_slack):
    request = await http_slack.create()
    http_slack.fake.archived.add(CHANNEL)
    await http_slack.deliver()
    http_slack.clock.advance(timedelta(hours=1))
    await http_slack.deliver()
    assert len(http_slack.fake.calls_to("chat.postMessage")) == 1
    kinds = [e.kind for e in await http_slack.audit(request.id)]
    assert "delivery_failed" in kinds


def test_build_slack_adapter_from_settings():
    settings = SlackSettings(
        bot_token="xoxb-1", signing_secret="s3cret", api_url="http://127.0.0.1:1/api"
    )
    adapter = build_slack_adapter(settings, public_url=PUBLIC_URL)
    assert adapter.min_send_interval == timedelta(seconds=1)
    [route] = adapter.router().routes
    assert isinstance(route, APIRoute)
    assert route.path == "/slack/events"
    socket = SlackSettings(bot_token="xoxb-1", mode="socket", app_token="xapp-1")
    assert build_slack_adapter(socket, public_url=PUBLIC_URL).router().routes == []
