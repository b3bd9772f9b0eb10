"""Each chat platform in the whole application: config to adapter, agent API to card,
click to the agent's long poll.

The runtime is built from a config file's text, exactly as ``signoff serve`` builds it
(``tests.reliability.app_world``): the real slack-bolt answers signed posts to the app's own
``/slack/events``, the real python-telegram-bot long-polls the fake Bot API, the real
discord.py holds the fake's gateway. Agent text with markup or mass mentions in the title
reaches every platform inert.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from tests.reliability.app_world import APPROVERS, AppWorld, app_world, fake_platforms
from tests.waiting import wait_for

TITLE = "Deploy <b>web</b> <!channel> @everyone"
ALICE = APPROVERS[0]


async def _click_approve(world: AppWorld, platform: str, request_id: str) -> Any:
    """Press Approve on the request's card as the first approver; checks the answer."""
    if platform == "slack":
        assert world.slack is not None
        card = await world.slack_card(request_id)
        assert "<!channel>" not in card.all_text
        ack = await world.slack.click(card, user=ALICE.slack, action_id="signoff_approve")
        assert ack["status"] == 200
    elif platform == "telegram":
        fake = world.telegram
        assert fake is not None
        message = await world.telegram_card(request_id)
        assert "<b>web</b>" in message.text  # shown as text, not markup
        update = await fake.click(ALICE.telegram, message, message.button_data("Approve"))
        return lambda: fake.answer_to(update)
    else:
        assert world.discord is not None
        assert world.discord.api_url == Route.BASE
        assert str(DiscordWebSocket.DEFAULT_GATEWAY) == world.discord.gateway_url
        posted = await world.discord_card(request_id)
        assert "@everyone" not in posted.all_text
        assert posted.allowed_mentions == {"parse": []}
        click = await world.discord.click(posted, user=ALICE.discord, label="Approve")
        return lambda: click.response_types == [6]
    return lambda: True


async def _card_shows_approval(world: AppWorld, platform: str, request_id: str) -> bool:
    if platform == "slack":
        card = await world.slack_card(request_id)
        return not card.buttons and f"Approved by {ALICE.name}" in card.all_text
    if platform == "telegram":
        message = await world.telegram_card(request_id)
        return not message.buttons() and ALICE.name in message.text
    posted = await world.discord_card(request_id)
    return not posted.buttons and f"Approved by {ALICE.name}" in posted.field("Status")


@pytest.mark.parametrize("platform", ["slack", "telegram", "discord"])
async def test_an_agents_request_is_approved_by_a_click_and_the_agent_hears_at_once(
    tmp_path, platform
):
    only = {name: name == platform for name in ("slack", "telegram", "discord")}
    async with (
        fake_platforms(**only) as (slack, telegram, discord),
        app_world(tmp_path, slack=slack, telegram=telegram, discord=discord) as world,
    ):
        request_id = await world.created(title=TITLE)
        await world.card_ref(request_id, platform)  # posted
        poll = asyncio.create_task(
            world.client.get(f"/v1/approvals/{request_id}?wait=30", headers=world.auth())
        )
        answered_on_platform = await _click_approve(world, platform, request_id)
        answered = await asyncio.wait_for(poll, timeout=30)
        assert answered.json()["status"] == "approved"
        assert answered.json()["decision"]["platform"] == platform

        async def platform_answered() -> bool:
            return bool(answered_on_platform())

        await wait_for(platform_answered)
        await wait_for(lambda: _card_shows_approval(world, platform, request_id))
        ready = await world.client.get("/readyz")
        assert ready.json()["checks"][platform] == "ok"
        await world.check()
