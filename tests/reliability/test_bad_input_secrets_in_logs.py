"""B17: no configured secret appears in any log line, at debug level, through a whole run.

The whole application with Slack (HTTP mode, so the signing secret is in use), Telegram
(long polling, and webhook mode with its secret; the bot token is in every Bot API URL
httpx logs) and Discord, logging at
``debug`` through signoff's own handler into a buffer: requests are created by an agent,
their cards posted on every platform, clicked, and decided. Then the whole log is searched
for every token, signing secret, webhook secret and the agent's API key.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from adapters.telegram.adapter import SECRET_HEADER, WEBHOOK_PATH
from approvals.machine import Status
from bot.logging_setup import HANDLER_NAME, QUIET_LOGGERS, REDACTED, configure_logging
from config.schema import LogSettings
from tests.fakes.telegram import TOKEN as TELEGRAM_TOKEN
from tests.reliability.app_world import (
    APPROVERS,
    DISCORD_TOKEN,
    SLACK_SECRET,
    SLACK_TOKEN,
    TELEGRAM_SECRET,
    app_world,
    fake_platforms,
)
from tests.waiting import wait_for


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Signoff's log handler at debug level writing into a buffer (only this test's secrets
    are known: see tests/conftest.py); the root logger's level and handlers are put back
    afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    quiet = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    buffer = io.StringIO()
    configure_logging(LogSettings(level="debug", format="text"), stream=buffer)
    try:
        yield buffer
    finally:
        for handler in list(root.handlers):
            if handler.get_name() == HANDLER_NAME:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
        for name, quiet_level in quiet.items():
            logging.getLogger(name).setLevel(quiet_level)


@pytest.mark.parametrize("telegram_mode", ["polling", "webhook"])
async def test_B17_no_secret_in_any_log_line_at_debug_level(tmp_path, debug_log, telegram_mode):
    async with (
        fake_platforms() as (slack, telegram, discord),
        app_world(
            tmp_path, slack=slack, telegram=telegram, telegram_mode=telegram_mode, discord=discord
        ) as world,
    ):
        assert slack is not None
        assert telegram is not None
        assert discord is not None
        alice, bob, carol = APPROVERS[:3]
        ids = [await world.created(title=f"B17 {platform}") for platform in ("s", "t", "d")]

        slack_card = await world.slack_card(ids[0])
        answer = await slack.deliver(
            slack.click_payload(slack_card, user=alice.slack, action_id="signoff_approve")
        )
        assert answer["status"] == 200, answer

        telegram_card = await world.telegram_card(ids[1])
        update = telegram.callback_update(
            bob.telegram, telegram_card, telegram_card.button_data("Approve")
        )
        if telegram_mode == "polling":
            await telegram.deliver(update)
        else:
            response = await world.client.post(
                WEBHOOK_PATH,
                content=json.dumps(update),
                headers={"Content-Type": "application/json", SECRET_HEADER: TELEGRAM_SECRET},
            )
            assert response.status_code == 200, response.text

        discord_card = await world.discord_card(ids[2])
        await discord.click(discord_card, user=carol.discord, label="Approve")

        async def all_approved() -> bool:
            requests = [await world.get(request_id) for request_id in ids]
            return all(r.status is Status.APPROVED for r in requests)

        await wait_for(all_approved, within=30)
        await world.check()
        secrets = {
            "Slack bot token": SLACK_TOKEN,
            "Slack signing secret": SLACK_SECRET,
            "Telegram bot token": TELEGRAM_TOKEN,
            "Discord bot token": DISCORD_TOKEN,
            "Telegram webhook secret": TELEGRAM_SECRET,
            "agent API key": world.key,
        }

    log = debug_log.getvalue()
    assert "HTTP Request" in log, "httpx's request lines were not captured"
    assert REDACTED in log, "nothing was redacted: the Telegram token is in every Bot API URL"
    leaked = {
        name: [line for line in log.splitlines() if secret in line][:3]
        for name, secret in secrets.items()
        if secret in log
    }
    assert not leaked, leaked
