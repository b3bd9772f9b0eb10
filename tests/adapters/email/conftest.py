"""Fixtures for the email scenarios: a fake SMTP relay on 127.0.0.1 and signoff's email
adapter (real aiosmtplib) against it, with the web inbox's confirm pages over httpx."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from adapters.email import EmailAdapter
from adapters.web import WebInbox
from approvals.inbox import InboxQueries
from approvals.model import Verdict
from bot.runtime import Runtime
from tests.fakes.smtp import PASSWORD, USERNAME, FakeSmtpRelay

PUBLIC_URL = "http://127.0.0.1:8080"
SENDER = "signoff@example.test"
LINK = re.compile(r"^(Approve|Deny): (\S+)$", re.MULTILINE)


def address(person: str) -> str:
    return f"{person}@example.test"


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[FakeSmtpRelay]:
    server = FakeSmtpRelay(certificate_dir=tmp_path)
    await server.start()
    yield server
    await server.stop()


def email_adapter(
    relay: FakeSmtpRelay, runtime: Runtime, *, password: str = PASSWORD, **options: Any
) -> EmailAdapter:
    """The real adapter, against ``relay``, with the runtime's decision links; as fast as
    the relay answers unless ``rate_per_minute`` is given."""
    options.setdefault("rate_per_minute", 1_000_000)
    return EmailAdapter(
        host="127.0.0.1",
        port=relay.port,
        tls=relay.tls,
        sender=SENDER,
        public_url=PUBLIC_URL,
        links=runtime.service.links,
        username=USERNAME if relay.auth else None,
        password=password if relay.auth else None,
        ca_file=str(relay.ca_file) if relay.ca_file else None,
        timeout=10,
        **options,
    )


async def confirm_client(runtime: Runtime) -> httpx.AsyncClient:
    """An httpx client on a web inbox's routes, started with the runtime's service."""
    inbox = runtime.web_inbox or WebInbox(
        InboxQueries(runtime.service),
        runtime.access,
        public_url=PUBLIC_URL,
        links=runtime.service.links,
    )
    await inbox.start(runtime.service)
    app = FastAPI()
    app.include_router(inbox.router())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL)


def body(message: EmailMessage, subtype: str = "plain") -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")  # the wire's line ends, as a reader sees them


def links_in(message: EmailMessage) -> dict[Verdict, str]:
    """The Approve / Deny links of a message's text part, as paths on signoff."""
    found = {Verdict(label.lower()): url for label, url in LINK.findall(body(message))}
    return {verdict: url.removeprefix(PUBLIC_URL) for verdict, url in found.items()}


def about(message: EmailMessage, request_id: str) -> bool:
    """Whether a message is one of the request's thread (its id names the request)."""
    return str(message["Message-ID"]).strip().startswith(f"<{request_id}.")


def is_first(message: EmailMessage) -> bool:
    return message["In-Reply-To"] is None


MIN = timedelta(minutes=1)
