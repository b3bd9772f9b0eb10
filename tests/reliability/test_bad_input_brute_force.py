"""B14: guessing sign-in links, session cookies or API keys is cut off, from the real address.

Failed authentications of every kind (an unknown API key, an invalid sign-in link, a session
cookie that is no session) count against one limit per client address: 30 at once, then 2
a second. Past it the address is answered 429 with ``Retry-After`` before anything is
looked up, a valid link or cookie too. The address is the connection's own:
``X-Forwarded-For`` counts only from ``server.trusted_proxies`` (none by default), so a
forged header neither dodges the limit nor aims it at someone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator

import httpx
import uvicorn

from adapters.web.inbox import SESSION_COOKIE
from bot.server import proxy_options
from tests.reliability.app_world import AppWorld, app_world
from tests.waiting import wait_for

BURST = 30
"""Failed attempts an address may make at once (bot.api.FAILED_AUTH_LIMIT)."""


async def _until_refused(send, limit: int = BURST + 5) -> int:
    """Send bad attempts until one is answered 429; how many were answered otherwise."""
    for attempt in range(limit):
        response = await send(attempt)
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
            return attempt
    raise AssertionError(f"no 429 after {limit} bad attempts")


async def test_B14_guessing_sign_in_links_is_cut_off_and_a_good_link_waits_too(tmp_path):
    async with app_world(tmp_path) as world:
        good = await world.runtime.access.create_login_token("p01")

        async def guess(_n: int) -> httpx.Response:
            return await world.client.post("/login", data={"token": secrets.token_urlsafe(24)})

        assert await _until_refused(guess) == BURST
        waiting = await world.client.post("/login", data={"token": good})
        assert waiting.status_code == 429
        assert "Too many attempts" in waiting.text
        assert SESSION_COOKIE not in world.client.cookies
        await world.check()


async def test_B14_guessing_session_cookies_is_cut_off(tmp_path):
    async with app_world(tmp_path) as world:
        alice = await world.signed_in("p01")

        async def guess(_n: int) -> httpx.Response:
            forged = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=world.app), base_url="http://127.0.0.1"
            )
            async with forged:
                forged.cookies.set(SESSION_COOKIE, secrets.token_urlsafe(32))
                return await forged.get("/")

        assert await _until_refused(guess) == BURST
        assert (await alice.get("/")).status_code == 429  # the address waits, whoever asks


async def test_B14_bad_keys_and_bad_links_share_one_limit(tmp_path):
    async with app_world(tmp_path) as world:
        for _ in range(BURST // 2):
            response = await world.client.get(
                "/v1/approvals/x", headers={"Authorization": "Bearer nope"}
            )
            assert response.status_code == 401

        async def guess(_n: int) -> httpx.Response:
            return await world.client.post("/login", data={"token": secrets.token_urlsafe(24)})

        assert await _until_refused(guess) == BURST - BURST // 2


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def _served(world: AppWorld, trusted: list[str]) -> AsyncIterator[str]:
    """The world's app on a real socket, with signoff's forwarding-header settings."""
    config = uvicorn.Config(
        world.app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        ws="none",
        http="h11",
        **proxy_options(trusted),
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await wait_for(started, within=10, poll=0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=10)


async def _bad_keys_with_forged_addresses(base_url: str) -> int:
    async with httpx.AsyncClient(base_url=base_url) as client:

        async def guess(n: int) -> httpx.Response:
            headers = {"Authorization": "Bearer nope", "X-Forwarded-For": f"203.0.113.{n % 250}"}
            return await client.get("/v1/approvals/x", headers=headers)

        try:
            return await _until_refused(guess, limit=BURST + 10)
        except AssertionError:
            return -1  # never refused


async def test_B14_a_forged_forwarding_header_changes_nothing_by_default(tmp_path):
    assert proxy_options([]) == {"proxy_headers": False}
    async with app_world(tmp_path) as world, _served(world, []) as base_url:
        # Every guess claims another address; all are counted against the real one.
        assert await _bad_keys_with_forged_addresses(base_url) == BURST


async def test_B14_a_trusted_proxy_s_forwarding_header_counts(tmp_path):
    async with app_world(tmp_path) as world, _served(world, ["127.0.0.1"]) as base_url:
        # Behind a trusted proxy each forwarded client has its own limit.
        assert await _bad_keys_with_forged_addresses(base_url) == -1
