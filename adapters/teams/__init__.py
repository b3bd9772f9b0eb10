"""Microsoft Teams: approval cards as Adaptive Cards, decisions by Universal Actions.

Built on Microsoft's Teams SDK for Python (``microsoft-teams-apps``). Importing it reads a
``.env`` file from the working directory into the environment (the SDK does so); signoff
passes every SDK option explicitly, so nothing it reads there changes the adapter.
"""

from __future__ import annotations

from adapters.teams.adapter import MESSAGES_PATH, TeamsAdapter
from adapters.teams.tokens import AppTokens, Certificate
from config.schema import TeamsSettings

__all__ = ["MESSAGES_PATH", "TeamsAdapter", "build_teams_adapter"]


def build_teams_adapter(settings: TeamsSettings, *, public_url: str) -> TeamsAdapter:
    """The Teams adapter for ``settings``; mount its ``router()`` on the application.

    Raises:
        ValueError: the certificate file cannot be read as a certificate with its key.
    """
    certificate = Certificate.from_pem_file(settings.certificate) if settings.certificate else None
    tokens = AppTokens(
        client_id=settings.app_id,
        login_url=str(settings.login_url),
        client_secret=(settings.app_password.get_secret_value() if settings.app_password else None),
        certificate=certificate,
    )
    return TeamsAdapter(
        app_id=settings.app_id,
        tenant_id=settings.tenant_id,
        tokens=tokens,
        public_url=public_url,
        api_url=str(settings.api_url),
        openid_metadata_url=str(settings.openid_metadata_url),
        token_issuer=settings.token_issuer,
        login_url=str(settings.login_url),
    )
