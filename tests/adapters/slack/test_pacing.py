"""slack.pacing from the config file: the application's Slack adapter spaces messages to a
channel as the config says, measured at the fake Slack."""

from __future__ import annotations

from datetime import timedelta

from adapters.slack import SlackAdapter
from approvals.clock import ManualClock
from bot.app import build_chat_adapters
from bot.runtime import Runtime
from config import load_config_text
from tests.adapters.slack.conftest import BOT_TOKEN, CHANNEL, PUBLIC_URL, SIGNING_SECRET
from tests.adapters.world import numbered_requests
from tests.fakes.slack import FakeSlack

MS = timedelta(milliseconds=1)

CONFIG = """\
version: 1
people: {alice: {slack: U0ALICE}}
channels: {ops-slack: {slack: C0OPS}}
platforms:
  slack:
    bot_token: "${SLACK_BOT_TOKEN}"
    signing_secret: "${SLACK_SIGNING_SECRET}"
    api_url: "@API@"
    pacing: {per_channel: 2.5s}
policies:
  - name: default
    levels: [{approvers: [alice], notify: [ops-slack], timeout: 30m}]
"""


def slack_from_config(fake: FakeSlack) -> SlackAdapter:
    """The Slack adapter the application builds from ``CONFIG``."""
    config = load_config_text(
        CONFIG.replace("@API@", fake.api_url),
        "signoff.yaml",
        environ={"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET},
    )
    adapter = build_chat_adapters(config, PUBLIC_URL)["slack"]
    assert isinstance(adapter, SlackAdapter)
    return adapter


async def test_a_slower_per_channel_pacing_spaces_the_cards_in_a_channel(
    fake_slack: FakeSlack, sqlite_runtime: Runtime, clock: ManualClock
) -> None:
    adapter = slack_from_config(fake_slack)
    assert adapter.min_send_interval == timedelta(milliseconds=2500)
    await adapter.start(sqlite_runtime.service)
    dispatcher = sqlite_runtime.dispatcher
    dispatcher.use_adapter("slack", adapter)
    try:
        await numbered_requests(sqlite_runtime.service, 3)

        await dispatcher.drain()
        assert len(fake_slack.posts_in(CHANNEL)) == 1
        for posted in (2, 3):
            # Slack's own pace (1 s) is not enough: the channel waits the configured 2.5 s.
            clock.advance(timedelta(seconds=1))
            await dispatcher.drain()
            clock.advance(timedelta(milliseconds=1500) - MS)
            await dispatcher.drain()
            assert len(fake_slack.posts_in(CHANNEL)) == posted - 1
            clock.advance(MS)
            await dispatcher.drain()
            assert len(fake_slack.posts_in(CHANNEL)) == posted
    finally:
        await adapter.stop()
