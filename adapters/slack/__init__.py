"""Slack: approval cards in Block Kit, decisions by button, HTTP mode or Socket Mode."""

from __future__ import annotations

from adapters.slack.adapter import SlackAdapter
from config.schema import SlackSettings

__all__ = ["SlackAdapter", "build_slack_adapter"]


def build_slack_adapter(settings: SlackSettings, *, public_url: str) -> SlackAdapter:
    """The Slack adapter for ``settings``; mount its ``router()`` on the application."""
    return SlackAdapter(
        bot_token=settings.bot_token.get_secret_value(),
        signing_secret=(
            settings.signing_secret.get_secret_value() if settings.signing_secret else None
        ),
        app_token=settings.app_token.get_secret_value() if settings.app_token else None,
        mode=settings.mode,
        api_url=str(settings.api_url),
        public_url=public_url,
        min_send_interval=settings.pacing.per_channel,
    )
