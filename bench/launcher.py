"""``signoff serve`` for benchmarks, with limits set through constructor arguments.

The agent API's rate limits and the chat adapters' send limits are deliberately not settable
from the config file or the API. Benchmarks that must not measure the rate limiter, or that
must give signoff the same send limits a fake platform enforces, start signoff with this
module instead of the ``signoff`` command:

    python -m bench.launcher --config signoff.yaml --options '{"lift_api_limits": true}'

Everything else is what ``signoff serve`` runs: the config loader, the composition root
(``build_runtime``), the HTTP app, uvicorn and the graceful stop of ``bot.server``. Only the
chat adapters are built here, from the same settings, so that their limits can be passed in.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import uvicorn
from pydantic import BaseModel, ConfigDict

from adapters.discord import build_discord_adapter
from adapters.pacing import SendLimit
from adapters.slack import build_slack_adapter
from adapters.teams import build_teams_adapter
from adapters.telegram import TelegramAdapter
from approvals.ports import Adapter
from bot.app import AppOptions, build_runtime
from bot.http import build_http_app
from bot.limits import RateLimit
from bot.logging_setup import configure_logging
from bot.server import GRACEFUL_STOP_SECONDS, SignoffServer
from config import LoadedConfig, load_config

UNLIMITED = RateLimit(rate=1e9, burst=1_000_000_000)


class WindowOption(BaseModel):
    """At most ``count`` messages in any ``period_seconds``."""

    model_config = ConfigDict(extra="forbid")
    count: int
    period_seconds: float

    def send_limit(self) -> SendLimit:
        return SendLimit(self.count, timedelta(seconds=self.period_seconds))


class ChannelPacing(BaseModel):
    """The least time between two messages to one chat or channel."""

    model_config = ConfigDict(extra="forbid")
    send_interval_seconds: float


class TelegramPacing(ChannelPacing):
    group: WindowOption
    overall: WindowOption


class TeamsPacing(BaseModel):
    """Teams' windows: several per conversation, one for the tenant."""

    model_config = ConfigDict(extra="forbid")
    conversation: list[WindowOption]
    overall: WindowOption


class LaunchOptions(BaseModel):
    """What this launcher changes about ``signoff serve``.

    Attributes:
        lift_api_limits: no per-agent or overall rate limit on the agent API.
        slack, telegram, discord, teams: send limits for that platform's adapter (defaults
            when absent).
    """

    model_config = ConfigDict(extra="forbid")
    lift_api_limits: bool = False
    slack: ChannelPacing | None = None
    telegram: TelegramPacing | None = None
    discord: ChannelPacing | None = None
    teams: TeamsPacing | None = None


def chat_adapters(config: LoadedConfig, options: LaunchOptions) -> dict[str, Adapter]:
    """The configured chat adapters, with the send limits of ``options``."""
    platforms = config.settings.platforms
    public_url = str(config.settings.server.public_url)
    adapters: dict[str, Adapter] = {}
    if platforms.slack is not None:
        slack = build_slack_adapter(platforms.slack, public_url=public_url)
        if options.slack is not None:
            slack.min_send_interval = timedelta(seconds=options.slack.send_interval_seconds)
        adapters["slack"] = slack
    if platforms.discord is not None:
        discord = build_discord_adapter(platforms.discord, public_url=public_url)
        if options.discord is not None:
            discord.min_send_interval = timedelta(seconds=options.discord.send_interval_seconds)
        adapters["discord"] = discord
    if platforms.telegram is not None:
        settings = platforms.telegram
        pacing: dict[str, Any] = {}
        if options.telegram is not None:
            pacing = {
                "min_send_interval": timedelta(seconds=options.telegram.send_interval_seconds),
                "group_limit": options.telegram.group.send_limit(),
                "overall_limit": options.telegram.overall.send_limit(),
            }
        adapters["telegram"] = TelegramAdapter(
            token=settings.bot_token.get_secret_value(),
            public_url=public_url,
            mode=settings.mode,
            webhook_secret=(
                settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
            ),
            api_url=str(settings.api_url),
            **pacing,
        )
    if platforms.teams is not None:
        limits: dict[str, Any] = {}
        if options.teams is not None:
            limits = {
                "conversation_limits": [w.send_limit() for w in options.teams.conversation],
                "tenant_limit": options.teams.overall.send_limit(),
            }
        adapters["teams"] = build_teams_adapter(platforms.teams, public_url=public_url, **limits)
    return adapters


async def serve(config: LoadedConfig, options: LaunchOptions) -> None:
    """``bot.server.serve`` with the adapters and API limits of ``options``."""
    app_options = AppOptions(adapters=chat_adapters(config, options))
    if options.lift_api_limits:
        app_options = replace(app_options, per_agent_limit=UNLIMITED, overall_limit=UNLIMITED)
    runtime = build_runtime(config, app_options)
    server_settings = config.settings.server
    uvicorn_config = uvicorn.Config(
        build_http_app(runtime),
        host=server_settings.host,
        port=server_settings.port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_STOP_SECONDS,
        lifespan="on",
    )
    await SignoffServer(uvicorn_config, runtime, welcome=False).serve()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the signoff config file")
    parser.add_argument("--options", default="{}", help="LaunchOptions as JSON")
    args = parser.parse_args(argv)
    options = LaunchOptions.model_validate_json(args.options)
    config = load_config(args.config)
    configure_logging(config.settings.log)  # as `signoff serve` logs
    asyncio.run(serve(config, options))


if __name__ == "__main__":
    main()
