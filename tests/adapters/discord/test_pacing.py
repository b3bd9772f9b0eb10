"""discord.pacing from the config file: the application's Discord adapter spaces messages
to a channel and holds all channels together to the configured overall window, measured at
the fake Discord."""

from __future__ import annotations

from datetime import timedelta

from adapters.discord import DiscordAdapter
from approvals.card import build_card
from approvals.clock import ManualClock
from approvals.directory import Destination, DestinationKind
from bot.app import build_chat_adapters
from bot.runtime import Runtime
from config import load_config_text
from tests.adapters.discord.conftest import BOT_TOKEN, CHANNEL, PUBLIC_URL
from tests.adapters.world import numbered_requests
from tests.fakes.discord import FakeDiscord

MS = timedelta(milliseconds=1)
OTHER_CHANNEL = "300002"

CONFIG = """\
version: 1
people: {alice: {}}
platforms:
  discord:
    bot_token: "${DISCORD_BOT_TOKEN}"
    api_url: "@API@"
    gateway_url: "@GATEWAY@"
    pacing: {per_channel: 3s, overall_per_second: 2}
policies:
  - name: default
    levels: [{approvers: [alice], notify: [web], timeout: 30m}]
"""


def discord_from_config(fake: FakeDiscord) -> DiscordAdapter:
    """The Discord adapter the application builds from ``CONFIG``, pointed at ``fake``."""
    text = CONFIG.replace("@API@", fake.api_url).replace("@GATEWAY@", fake.gateway_url)
    config = load_config_text(text, "signoff.yaml", environ={"DISCORD_BOT_TOKEN": BOT_TOKEN})
    adapter = build_chat_adapters(config, PUBLIC_URL)["discord"]
    assert isinstance(adapter, DiscordAdapter)
    return adapter


async def test_slower_pacing_spaces_a_channel_and_holds_all_channels_together(
    fake_discord: FakeDiscord, sqlite_runtime: Runtime, clock: ManualClock
) -> None:
    adapter = discord_from_config(fake_discord)
    assert adapter.min_send_interval == timedelta(seconds=3)
    await adapter.start(sqlite_runtime.service)
    dispatcher = sqlite_runtime.dispatcher
    dispatcher.use_adapter("discord", adapter)
    try:
        requests = await numbered_requests(sqlite_runtime.service, 2)

        await dispatcher.drain()
        assert len(fake_discord.cards_in(CHANNEL)) == 1
        clock.advance(timedelta(seconds=3) - MS)
        await dispatcher.drain()
        assert len(fake_discord.cards_in(CHANNEL)) == 1  # per_channel: 3s
        elsewhere = Destination("discord", DestinationKind.CHANNEL, OTHER_CHANNEL)
        await adapter.send(build_card(requests[0]), elsewhere)
        clock.advance(MS)
        await dispatcher.drain()
        assert len(fake_discord.cards_in(CHANNEL)) == 2
    finally:
        await adapter.stop()

    posts = fake_discord.calls_to("create_message")
    assert [call.channel_id for call in posts] == [CHANNEL, OTHER_CHANNEL, CHANNEL]
    # overall_per_second: 2 across channels (Discord allows 50): the third in a second waits.
    assert posts[2].at - posts[0].at >= 1.0
