"""Microsoft Teams: approval cards as Adaptive Cards, decisions by Universal Actions.

Built on Microsoft's Teams SDK for Python (``microsoft-teams-apps``), which is imported
only when the adapter is built (``adapters.teams.adapter``): importing the SDK reads a
``.env`` file from the working directory into the environment. signoff passes every SDK
option explicitly, so nothing read there changes the adapter.
"""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from adapters.pacing import SendLimit
from config.schema import TeamsSettings

if TYPE_CHECKING:
    from adapters.teams.adapter import TeamsAdapter

__all__ = ["MESSAGES_PATH", "build_teams_adapter"]

MESSAGES_PATH = "/teams/messages"
"""Where the Bot Connector delivers activities: ``<public_url>/teams/messages``."""


def build_teams_adapter(settings: TeamsSettings, *, public_url: str, **limits: Any) -> TeamsAdapter:
    """The Teams adapter for ``settings``; mount its ``router()`` on the application.

    The send limits are ``settings.pacing``'s; ``limits`` (:class:`TeamsAdapter`'s
    ``conversation_limits``, ``tenant_limit``) replace them, for benchmarks against a fake.

    Raises:
        ValueError: the certificate file cannot be read as a certificate with its key.
    """
    with warnings.catch_warnings():
        # The SDK warns at import that a feature of its own (an HTML widget policy signoff
        # does not use) is in preview, and when App() builds its deprecated bot client.
        warnings.filterwarnings("ignore", message="HtmlWidgetSecurityPolicy is in preview")
        warnings.filterwarnings("ignore", message="The bot client is deprecated")
        return _build(settings, public_url, limits)


def _build(settings: TeamsSettings, public_url: str, limits: dict[str, Any]) -> TeamsAdapter:
    from adapters.teams.adapter import TeamsAdapter
    from adapters.teams.tokens import AppTokens, Certificate

    certificate = Certificate.from_pem_file(settings.certificate) if settings.certificate else None
    tokens = AppTokens(
        client_id=settings.app_id,
        login_url=str(settings.login_url),
        client_secret=(settings.app_password.get_secret_value() if settings.app_password else None),
        certificate=certificate,
    )
    pacing = settings.pacing
    configured: dict[str, Any] = {
        "conversation_limits": tuple(
            SendLimit(count, period) for count, period in pacing.per_conversation.windows()
        ),
        "tenant_limit": SendLimit(pacing.per_tenant_per_second, timedelta(seconds=1)),
    }
    return TeamsAdapter(
        app_id=settings.app_id,
        tenant_id=settings.tenant_id,
        tokens=tokens,
        public_url=public_url,
        api_url=str(settings.api_url),
        openid_metadata_url=str(settings.openid_metadata_url),
        token_issuer=settings.token_issuer,
        login_url=str(settings.login_url),
        **(configured | limits),
    )
