"""Fake platform servers on 127.0.0.1 that speak the platforms' wire protocols.

The real client libraries (slack-bolt and slack-sdk, python-telegram-bot, discord.py, the
Teams SDK, aiosmtplib) talk to these as they would to Slack, Telegram, Discord, Microsoft
Teams and an SMTP relay: signed HTTP, long polling and webhooks, the Discord gateway
websocket, the Bot Connector with its JWT keys and token issuer, SMTP with TLS. The real
Claude Code CLI talks to :class:`FakeAnthropic`, a Messages API whose model is a script.
Tests and benchmarks use them through the names below; :mod:`tests.fakes.recording` has
an in-memory adapter that records what it was given.
"""

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.discord import FakeDiscord
from tests.fakes.discord import json_response as discord_json_response
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import FakeSmtpRelay
from tests.fakes.teams import FakeTeams
from tests.fakes.telegram import FakeBotApi
from tests.fakes.telegram import error_response as telegram_error_response

__all__ = [
    "FakeAnthropic",
    "FakeBotApi",
    "FakeDiscord",
    "FakeSlack",
    "FakeSmtpRelay",
    "FakeTeams",
    "discord_json_response",
    "telegram_error_response",
]
