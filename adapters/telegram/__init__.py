"""Telegram: approval cards in chats, groups and private chats, decided with inline buttons."""

from __future__ import annotations

from adapters.telegram.adapter import TelegramAdapter, TelegramConfigError
from config.schema import TelegramSettings

__all__ = ["TelegramAdapter", "TelegramConfigError", "build_telegram_adapter"]


def build_telegram_adapter(settings: TelegramSettings, *, public_url: str) -> TelegramAdapter:
    """The adapter for ``settings``; webhook mode without a secret raises
    :class:`TelegramConfigError`."""
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    return TelegramAdapter(
        token=settings.bot_token.get_secret_value(),
        public_url=public_url,
        mode=settings.mode,
        webhook_secret=secret,
        api_url=settings.api_url,
    )
