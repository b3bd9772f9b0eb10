"""Fake platform servers on 127.0.0.1 that speak the platforms' wire protocols.

The real client libraries (slack-bolt and slack-sdk, python-telegram-bot, discord.py) talk
to these as they would to Slack, Telegram and Discord: signed HTTP, long polling and
webhooks, the Discord gateway websocket. Tests and benchmarks use them through the names
below; :mod:`tests.fakes.recording` has an in-memory adapter that records what it was given.
"""

from tests.fakes.discord import FakeDiscord
from tests.fakes.discord import json_response as discord_json_response
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeBotApi
from tests.fakes.telegram import error_response as telegram_error_response

__all__ = [
    "FakeBotApi",
    "FakeDiscord",
    "FakeSlack",
    "discord_json_response",
    "telegram_error_response",
]
