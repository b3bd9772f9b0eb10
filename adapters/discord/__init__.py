"""Discord: approval cards as embeds, decisions by button (and a modal for reasons)."""

from __future__ import annotations

from datetime import timedelta

from adapters.discord.adapter import DEFAULT_SEND_INTERVAL, DiscordAdapter
from adapters.pacing import SendLimit
from config.schema import DiscordSettings

__all__ = ["DiscordAdapter", "build_discord_adapter"]


def build_discord_adapter(settings: DiscordSettings, *, public_url: str) -> DiscordAdapter:
    """The Discord adapter for ``settings``; the runtime starts and stops it."""
    pacing = settings.pacing
    overall = pacing.overall_per_second
    return DiscordAdapter(
        bot_token=settings.bot_token.get_secret_value(),
        api_url=str(settings.api_url),
        gateway_url=str(settings.gateway_url),
        public_url=public_url,
        min_send_interval=pacing.per_channel or DEFAULT_SEND_INTERVAL,
        overall_limit=SendLimit(overall, timedelta(seconds=1)) if overall is not None else None,
    )
