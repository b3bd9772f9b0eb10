"""telegram.pacing from the config file: the application's Telegram adapter keeps the
configured per-chat interval, group window and overall window, measured by the times the
fake Bot API received each message."""

from __future__ import annotations

import pytest

from adapters.pacing import PacingDelay
from adapters.telegram import TelegramAdapter
from approvals.card import build_card
from approvals.directory import Destination, DestinationKind
from approvals.model import CreateCommand
from approvals.outcomes import Created
from bot.app import build_chat_adapters
from bot.runtime import Runtime
from config import load_config_text
from tests.adapters.telegram.conftest import ALICE, GROUP
from tests.fakes.telegram import TOKEN, FakeBotApi

CONFIG = """\
version: 1
people: {alice: {}}
platforms:
  telegram:
    bot_token: "${TELEGRAM_BOT_TOKEN}"
    api_url: "@API@"
    pacing: {per_chat: 1.5s, per_group_per_minute: 2, overall_per_second: 1}
policies:
  - name: default
    levels: [{approvers: [alice], notify: [web], timeout: 30m}]
"""


def telegram_from_config(fake: FakeBotApi) -> TelegramAdapter:
    """The Telegram adapter the application builds from ``CONFIG``."""
    config = load_config_text(
        CONFIG.replace("@API@", fake.base_url),
        "signoff.yaml",
        environ={"TELEGRAM_BOT_TOKEN": TOKEN},
    )
    adapter = build_chat_adapters(config, "http://127.0.0.1:9")["telegram"]
    assert isinstance(adapter, TelegramAdapter)
    return adapter


async def test_slower_pacing_holds_each_chat_each_group_and_the_whole_bot(
    fake: FakeBotApi, sqlite_runtime: Runtime
) -> None:
    outcome = await sqlite_runtime.service.create(CreateCommand("deploy-bot", "deploy.web", "t"))
    assert isinstance(outcome, Created)
    card = build_card(outcome.request)
    group = Destination("telegram", DestinationKind.CHANNEL, str(GROUP))
    alice = Destination("telegram", DestinationKind.USER, str(ALICE))
    adapter = telegram_from_config(fake)
    await adapter.start(sqlite_runtime.service, inbound=False)
    try:
        await adapter.send(card, group)
        await adapter.send(card, alice)  # another chat: held by the overall window only
        await adapter.send(card, group)  # held by the per-chat interval
        with pytest.raises(PacingDelay) as held:
            await adapter.send(card, group)  # the group's third message this minute
    finally:
        await adapter.stop()

    first, to_alice, second = fake.sent("sendMessage")
    assert (first.params["chat_id"], to_alice.params["chat_id"]) == (GROUP, ALICE)
    assert to_alice.at - first.at >= 1.0  # overall_per_second: 1
    assert second.at - first.at >= 1.5  # per_chat: 1.5s
    assert f"group {GROUP} send limit (2 per 60s)" in str(held.value)
    assert held.value.wait.total_seconds() > 55  # until the first leaves the minute's window
    assert adapter.min_send_interval.total_seconds() == 1.5  # the outbox's pace per chat
