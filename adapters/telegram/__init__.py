"""Telegram: approval cards in chats, groups and private chats, decided with inline buttons."""

from __future__ import annotations

from datetime import timedelta

from adapters.telegram.adapter import TelegramAdapter, TelegramConfigError
from adapters.telegram.pacing import SendLimit
from config.schema import TelegramSettings

__all__ = ["TelegramAdapter", "TelegramConfigError", "build_telegram_adapter"]


def build_telegram_adapter(settings: TelegramSettings, *, public_url: str) -> TelegramAdapter:
    """The adapter for ``settings``; webhook mode without a secret raises
    :class:`TelegramConfigError`."""
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    pacing = settings.pacing
    return TelegramAdapter(
        token=settings.bot_token.get_secret_value(),
        public_url=public_url,
        mode=settings.mode,
        webhook_secret=secret,
        api_url=settings.api_url,
        min_send_interval=pacing.per_chat,
        group_limit=SendLimit(pacing.per_group_per_minute, timedelta(minutes=1)),
        overall_limit=SendLimit(pacing.overall_per_second, timedelta(seconds=1)),
    )
