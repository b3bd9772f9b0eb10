"""The web inbox under the adapter contract.

The inbox posts no messages: its card is the request's page, a click is a form post with
the session's CSRF token, and what the person is told is the page the post answers with.
"""

from __future__ import annotations

import html
import re

import httpx
import pytest
from fastapi import FastAPI

from approvals.clock import ManualClock
from approvals.directory import WEB, WEB_PLATFORM, Destination
from approvals.model import Verdict
from approvals.ports import Adapter
from bot.runtime import Runtime
from tests.adapters.contract import CONFIRMS, AdapterContract, Shown
from tests.web.conftest import InboxHarness, csrf_token_in

VOTE_BUTTON = re.compile(r'<button type="submit" class="(?:approve|deny)">([^<]+)</button>')
TAGS = re.compile(r"<[^>]+>")
HIDDEN_FIELD = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
PATHS = {Verdict.APPROVE: "approve", Verdict.DENY: "deny"}


class WebDriver:
    """The web inbox's pages, signed in as each person through a real sign-in link."""

    platform = WEB_PLATFORM
    notify = WEB
    channels: dict[str, tuple[Destination, ...]] = {}

    def __init__(self) -> None:
        self.harness: InboxHarness | None = None
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.answers: dict[str, list[str]] = {}
        self.last_post: tuple[str, str, dict[str, str]] | None = None
        self.pages: dict[str, str] = {}
        """The page each person's last post answered with, as sent."""

    def identity(self, person: str) -> str:
        return person

    async def start(self, runtime: Runtime) -> Adapter:
        inbox = runtime.web_inbox
        assert inbox is not None
        await inbox.start(runtime.service)
        app = FastAPI()
        app.include_router(inbox.router())
        clock = runtime.service.clock
        assert isinstance(clock, ManualClock)
        self.harness = InboxHarness(app, runtime.service, runtime.access, runtime.store, clock)
        return inbox

    async def stop(self) -> None:
        if self.harness is not None:
            await self.harness.close()

    async def _client(self, person: str) -> httpx.AsyncClient:
        if person not in self.clients:
            assert self.harness is not None
            client = await self.harness.signed_in(person)
            client.follow_redirects = True
            self.clients[person] = client
        return self.clients[person]

    async def shown(self, request_id: str) -> Shown:
        page = await (await self._client("alice")).get(f"/requests/{request_id}")
        assert page.status_code == 200, page.text
        body = page.text[page.text.index("<body") :]  # what the page shows, not its <title>
        return Shown(html.unescape(TAGS.sub(" ", body)), VOTE_BUTTON.findall(page.text))

    async def _post(self, person: str, path: str, form: dict[str, str]) -> None:
        self.last_post = (person, path, form)
        answer = await (await self._client(person)).post(path, data=form)
        self.pages[person] = answer.text
        self.answers.setdefault(person, []).append(html.unescape(TAGS.sub(" ", answer.text)))

    async def _vote(
        self, request_id: str, person: str, verdict: Verdict, reason: str | None = None
    ) -> None:
        client = await self._client(person)
        # Any signed-in page carries the session's token (the sign-out form), also for
        # someone who may not see the request.
        csrf = csrf_token_in((await client.get("/")).text)
        form = {"csrf_token": csrf} if reason is None else {"csrf_token": csrf, "reason": reason}
        await self._post(person, f"/requests/{request_id}/{PATHS[verdict]}", form)

    async def click(self, request_id: str, person: str, verdict: Verdict) -> None:
        await self._vote(request_id, person, verdict)

    async def deny_with_reason(self, request_id: str, person: str, reason: str) -> None:
        await self._vote(request_id, person, Verdict.DENY, reason)

    async def confirmation(self, request_id: str, person: str) -> Shown:
        page = self.pages[person]
        assert "Confirm your approval" in page
        body = page[page.index("<body") :]
        return Shown(html.unescape(TAGS.sub(" ", body)), VOTE_BUTTON.findall(page))

    async def confirm(self, request_id: str, person: str) -> None:
        form = self.pages[person].split('class="approve-form confirm-form">', 1)[1]
        fields = dict(HIDDEN_FIELD.findall(form.split("</form>", 1)[0]))
        fields = {name: html.unescape(value) for name, value in fields.items()}
        await self._post(person, f"/requests/{request_id}/approve", fields)

    async def forged_click(self, request_id: str, person: str) -> None:
        # Another site's form can send the cookie but cannot know the CSRF token.
        client = await self._client(person)
        path = f"/requests/{request_id}/approve"
        answer = await client.post(path, data={"csrf_token": "guessed"})
        assert answer.status_code == 403

    async def replay(self) -> None:
        assert self.last_post is not None
        await self._post(*self.last_post)

    async def click_with_other_button(self, card_of: str, button_of: str, person: str) -> None:
        raise AssertionError("the web inbox posts no messages")

    async def notices(self, person: str) -> list[str]:
        return self.answers.get(person, [])

    async def replies(self, request_id: str) -> list[str]:
        raise AssertionError("the web inbox posts no replies")

    def fail_sends(self, status: int, *, times: int = 1, retry_after: int | None = None) -> None:
        raise AssertionError("the web inbox sends nothing")

    def posts(self) -> int:
        raise AssertionError("the web inbox posts nothing")


class TestWebInboxContract(AdapterContract):
    capabilities = frozenset({CONFIRMS})

    @pytest.fixture
    def driver(self) -> WebDriver:
        return WebDriver()
