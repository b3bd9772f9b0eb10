"""Fixtures for the web inbox: the inbox on a FastAPI app, signed-in clients, a live server and
a headless Chromium for the browser scenarios."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from adapters.web import WebInbox
from adapters.web.inbox import SESSION_COOKIE
from approvals.access import AccessStore
from approvals.clock import ManualClock
from approvals.inbox import InboxQueries
from approvals.model import ApprovalRequest, CreateCommand
from approvals.outcomes import Created
from approvals.service import ApprovalService, Rules
from approvals.store import SqlStore
from bot.runtime import Runtime
from tests.waiting import wait_for
from tests.world import build_test_runtime, missing_prerequisite

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TEST_BASE_URL = "http://testserver"
PROD = {"env": "prod"}
"""Params that route a ``db.*`` action to the prod-db policy (quorum 2, reason required)."""

_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token_in(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = _CSRF_FIELD.search(html)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


LIVE_EVERY = timedelta(milliseconds=200)
"""How often the live inbox's pages ask whether they changed (the product asks every 5 s)."""


async def build_inbox_app(
    runtime: Runtime, *, public_url: str = TEST_BASE_URL, live_every: timedelta = LIVE_EVERY
) -> FastAPI:
    """The inbox's pages on an app, built from the runtime's parts as ``build_runtime``
    builds it (at ``public_url``), started with the runtime's service as its sink."""
    web = WebInbox(
        InboxQueries(runtime.service), runtime.access, public_url=public_url, live_every=live_every
    )
    await web.start(runtime.service)
    app = FastAPI()
    app.include_router(web.router())
    return app


async def inbox_harness(runtime: Runtime, *, public_url: str = TEST_BASE_URL) -> InboxHarness:
    """The inbox app on ``runtime`` (whose clock is a manual one), and its helpers."""
    clock = runtime.service.clock
    assert isinstance(clock, ManualClock)
    app = await build_inbox_app(runtime, public_url=public_url)
    return InboxHarness(app, runtime.service, runtime.access, runtime.store, clock)


@dataclass
class InboxHarness:
    """The inbox app with its service, and helpers to create requests and sign people in."""

    app: FastAPI
    service: ApprovalService
    access: AccessStore
    store: SqlStore
    clock: ManualClock
    creates: int = 0
    """Requests created so far: the number a create without params asks with as its ``n``."""
    _clients: list[httpx.AsyncClient] = field(default_factory=list)

    def client(self) -> httpx.AsyncClient:
        """A browser-like client with its own cookie jar, not following redirects."""
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=TEST_BASE_URL
        )
        self._clients.append(client)
        return client

    async def signed_in(self, person: str) -> httpx.AsyncClient:
        """A client signed in as ``person`` through a real sign-in link."""
        client = self.client()
        token = await self.access.create_login_token(person)
        response = await client.post("/login", data={"token": token})
        assert response.status_code == 303, response.text
        assert client.cookies.get(SESSION_COOKIE)
        return client

    async def create(
        self,
        *,
        action: str = "deploy.run",
        title: str = "Deploy web to production",
        params: dict[str, Any] | None = None,
        **extra: Any,
    ) -> ApprovalRequest:
        """A new request of ``deploy-bot``. Without ``params`` it asks with
        ``{"service": "web", "n": <this create's number>}``, so each is a request of its own:
        the service answers an agent that asks again for what it has pending with that
        pending request."""
        self.creates += 1
        outcome = await self.service.create(
            CreateCommand(
                agent="deploy-bot",
                action=action,
                title=title,
                params={"service": "web", "n": self.creates} if params is None else params,
                **extra,
            )
        )
        assert isinstance(outcome, Created), outcome
        assert outcome.is_new, outcome
        return outcome.request

    async def csrf_for(self, client: httpx.AsyncClient, request_id: str) -> str:
        page = await client.get(f"/requests/{request_id}")
        assert page.status_code == 200, page.text
        return csrf_token_in(page.text)

    async def audit_count(self) -> int:
        async with self.store.read() as reader:
            return len(await reader.audit_entries())

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()


@pytest.fixture
async def inbox(store: SqlStore, rules: Rules, clock: ManualClock) -> AsyncIterator[InboxHarness]:
    """The inbox on SQLite and on PostgreSQL."""
    harness = await inbox_harness(build_test_runtime(store, clock, rules))
    yield harness
    await harness.close()


# -- the live server and the browser ---------------------------------------------------------


class _TestServer(uvicorn.Server):
    """uvicorn inside the test's event loop; pytest keeps its own signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class LiveInbox:
    """The inbox served over real HTTP on 127.0.0.1."""

    harness: InboxHarness
    base_url: str

    def url(self, path: str) -> str:
        return self.base_url + path

    async def login_link(self, person: str) -> str:
        token = await self.harness.access.create_login_token(person)
        return self.url(f"/login?token={token}")


@pytest.fixture
async def live_inbox(
    sqlite_store: SqlStore, rules: Rules, clock: ManualClock
) -> AsyncIterator[LiveInbox]:
    """The inbox app served by uvicorn on a free port, for the browser."""
    harness = await inbox_harness(
        build_test_runtime(sqlite_store, clock, rules), public_url="http://127.0.0.1"
    )
    app = harness.app
    server = _TestServer(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            ws="none",
            http="h11",
        )
    )
    serving = asyncio.create_task(server.serve())

    async def started() -> bool:
        if serving.done():
            pytest.fail(f"the inbox server stopped while starting: {serving.exception()!r}")
        return server.started

    await wait_for(started, within=10, poll=0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield LiveInbox(harness, f"http://{host}:{port}")
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=10)
        await harness.close()


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium: skipped locally when missing, a failure on CI."""
    if not CHROMIUM.exists():
        missing_prerequisite(f"Chromium is not installed at {CHROMIUM}")
    return CHROMIUM


@pytest.fixture
async def browser_page(chromium: Path) -> AsyncIterator[Any]:
    """A fresh page in headless Chromium (the system's build; never downloaded)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = await browser.new_context(viewport={"width": 1200, "height": 900})
            # Only the local test server may be reached; anything else is cut off.
            await context.route(
                re.compile(r"^(?!http://127\.0\.0\.1:\d+/).*"),
                lambda route: route.abort("blockedbyclient"),
            )
            page = await context.new_page()
            page.set_default_timeout(10_000)
            yield page
            await context.close()
        finally:
            await browser.close()
