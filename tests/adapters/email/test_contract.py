"""Email under the adapter contract.

Cards go to each approver directly (``dm``) through a fake SMTP relay on 127.0.0.1, with
the real aiosmtplib. A "click" is what a person does with a mail: open the Approve or Deny
link from the message that arrived (a GET of the confirm page in the web inbox, which
decides nothing), then press the page's button (the POST). What the person is told is the
page the POST answers with; what the card shows is the newest message of the request's
thread in alice's mailbox. A forged click is a link whose signature was tampered with; a
replay is the same POST again.

Cases that do not apply to email, and why:

- ``messages`` (another request's button on a card): a link does not name the message it
  came in; it is signed for one request, one verdict and one person, so "another
  request's button" is a link for another request, refused as tampered or mismatched
  (``tests/reliability/test_bad_input_email.py``).
- ``rate limits`` (a 429 with ``Retry-After`` waited out channel-wide, an outage): SMTP has
  no 429 and no ``Retry-After``; a relay's 4xx is retried with the outbox's backoff and a
  5xx is dead-lettered, which ``test_delivery.py`` checks against the relay itself.

The stranger has no mail from signoff; their click is a genuine link signed for an address
the directory does not know (as after they were removed from the config), so that the core,
not the link check, is what refuses it.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import httpx
import pytest

from approvals.directory import DM, Destination
from approvals.model import Verdict
from approvals.ports import Adapter
from bot.runtime import Runtime
from tests.adapters.contract import CONFIRMS, POSTS, REPLIES, STRANGER, AdapterContract, Shown
from tests.adapters.email.conftest import (
    about,
    address,
    body,
    confirm_client,
    email_adapter,
    is_first,
    links_in,
)
from tests.fakes.smtp import FakeSmtpRelay

TAGS = re.compile(r"<[^>]+>")
CONFIRM_BUTTON = re.compile(r'<button type="submit" class="(?:approve|deny)">')
BUTTON_LABEL = re.compile(r'<button type="submit" class="(?:approve|deny)">([^<]+)</button>')
CONFIRM_TOKEN = re.compile(r'name="confirm_token" value="([^"]+)"')


def page_text(page: str) -> str:
    return html.unescape(TAGS.sub(" ", page))


class EmailDriver:
    """Mailboxes at the fake relay, and a browser on the confirm pages."""

    platform = "email"
    notify = DM
    channels: dict[str, tuple[Destination, ...]] = {}

    def __init__(self, certificate_dir: Path) -> None:
        self.relay = FakeSmtpRelay(certificate_dir=certificate_dir)
        self.runtime: Runtime | None = None
        self.client: httpx.AsyncClient | None = None
        self.answers: dict[str, list[str]] = {}
        self.last_post: tuple[str, str, dict[str, str]] | None = None
        self.confirm_steps: dict[str, tuple[str, str]] = {}
        """The confirm step each person's Approve link opened: its path and its token."""

    def identity(self, person: str) -> str:
        return address(person)

    async def start(self, runtime: Runtime) -> Adapter:
        await self.relay.start()
        self.runtime = runtime
        self.client = await confirm_client(runtime)
        adapter = email_adapter(self.relay, runtime)
        await adapter.start(runtime.service)
        return adapter

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        await self.relay.stop()

    async def shown(self, request_id: str) -> Shown:
        thread = [m for m in self.relay.to(address("alice")) if about(m, request_id)]
        assert thread, "no mail for alice about the request"
        newest = thread[-1]
        return Shown(body(newest), [label.capitalize() for label in links_in(newest)])

    async def _link(self, request_id: str, person: str, verdict: Verdict) -> str:
        if person == STRANGER:
            assert self.runtime is not None
            card = await self.runtime.service.card(request_id)
            assert card is not None
            token = await self.runtime.service.links.issue(
                platform=self.platform,
                identity=address(person),
                request_id=request_id,
                verdict=verdict,
                expires_at=card.deadline,
            )
            return f"/confirm/{request_id}/{verdict.value}/{token}"
        mails = [m for m in self.relay.to(address(person)) if about(m, request_id)]
        with_links = [links_in(m) for m in mails if links_in(m)]
        assert with_links, f"{person} has no mail with links about the request"
        return with_links[-1][verdict]

    async def _press(self, person: str, path: str, form: dict[str, str]) -> None:
        assert self.client is not None
        self.last_post = (person, path, form)
        answer = await self.client.post(path, data=form, headers={"Sec-Fetch-Site": "same-origin"})
        self.answers.setdefault(person, []).append(page_text(answer.text))

    async def _decide(
        self, request_id: str, person: str, verdict: Verdict, reason: str | None = None
    ) -> None:
        assert self.client is not None
        path = await self._link(request_id, person, verdict)
        page = await self.client.get(path)
        assert page.status_code in (200, 409, 410), page.text
        if page.status_code == 200:
            assert CONFIRM_BUTTON.search(page.text), page.text
        token = CONFIRM_TOKEN.search(page.text)
        if token is not None:
            # The policy needs approvals confirmed: the page is that step (see confirm()).
            self.confirm_steps[person] = (path, html.unescape(token.group(1)))
            return
        # A page opened before the deadline still has its button: press it regardless.
        form = {"confirm": "1"} if reason is None else {"confirm": "1", "reason": reason}
        await self._press(person, path, form)

    async def click(self, request_id: str, person: str, verdict: Verdict) -> None:
        await self._decide(request_id, person, verdict)

    async def deny_with_reason(self, request_id: str, person: str, reason: str) -> None:
        await self._decide(request_id, person, Verdict.DENY, reason)

    async def confirmation(self, request_id: str, person: str) -> Shown:
        assert self.client is not None
        path, _token = self.confirm_steps[person]
        page = (await self.client.get(path)).text
        return Shown(page_text(page[page.index("<body") :]), BUTTON_LABEL.findall(page))

    async def confirm(self, request_id: str, person: str) -> None:
        path, token = self.confirm_steps[person]
        await self._press(person, path, {"confirm": "1", "confirm_token": token})

    async def forged_click(self, request_id: str, person: str) -> None:
        assert self.client is not None
        path = await self._link(request_id, person, Verdict.APPROVE)
        payload, signature = path.rsplit("/", 1)[1].split(".")
        forged_signature = ("A" if signature[0] != "A" else "B") + signature[1:]
        forged = path.rsplit("/", 1)[0] + f"/{payload}.{forged_signature}"
        answer = await self.client.post(
            forged, data={"confirm": "1"}, headers={"Sec-Fetch-Site": "same-origin"}
        )
        assert answer.status_code == 403

    async def replay(self) -> None:
        assert self.last_post is not None
        await self._press(*self.last_post)

    async def click_with_other_button(self, card_of: str, button_of: str, person: str) -> None:
        raise AssertionError("a link names no message")

    async def notices(self, person: str) -> list[str]:
        return self.answers.get(person, [])

    async def replies(self, request_id: str) -> list[str]:
        thread = [m for m in self.relay.to(address("alice")) if about(m, request_id)]
        return [body(m) for m in thread if not is_first(m)]

    def fail_sends(self, status: int, *, times: int = 1, retry_after: int | None = None) -> None:
        raise AssertionError("SMTP has no 429; see test_delivery.py")

    def posts(self) -> int:
        return sum(1 for m in self.relay.to(address("alice")) if is_first(m))


class TestEmailContract(AdapterContract):
    capabilities = frozenset({POSTS, REPLIES, CONFIRMS})

    @pytest.fixture
    def driver(self, tmp_path: Path) -> EmailDriver:
        return EmailDriver(tmp_path)
