"""Email: approval cards mailed through an SMTP relay, decided through signed links."""

from __future__ import annotations

from adapters.email.adapter import EmailAdapter
from approvals.links import DecisionLinks
from config.schema import EmailSettings

__all__ = ["EmailAdapter", "build_email_adapter"]


def build_email_adapter(
    settings: EmailSettings, *, public_url: str, links: DecisionLinks | None
) -> EmailAdapter:
    """The email adapter for ``settings``; its links are made with ``links``."""
    return EmailAdapter(
        host=settings.host,
        port=settings.effective_port,
        tls=settings.tls,
        sender=settings.sender,
        public_url=public_url,
        links=links,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        ca_file=settings.ca_file,
        rate_per_minute=settings.rate,
        link_lifetime=settings.link_lifetime,
        timeout=settings.timeout.total_seconds(),
    )
