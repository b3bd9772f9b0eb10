"""Pages about pending requests follow them in the browser, without a reload by hand.

A request page reloads itself once someone decides elsewhere and then says who decided;
the pending list shows a new request; a person typing a deny reason keeps the text and is
offered the new state instead. The pages ask ``/live/...`` (JSON, signed-in only).
"""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from approvals.model import Verdict, VoteCommand
from tests.web.conftest import LiveInbox

pytestmark = pytest.mark.slow


async def _sign_in(page: Page, live_inbox: LiveInbox, person: str = "alice") -> None:
    await page.goto(await live_inbox.login_link(person))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Pending requests")).to_be_visible()


async def test_a_request_decided_elsewhere_shows_who_decided(live_inbox, browser_page):
    request = await live_inbox.harness.create(title="Deploy web to production")
    page: Page = browser_page
    await _sign_in(page, live_inbox)
    await page.goto(live_inbox.url(f"/requests/{request.id}"))
    await expect(page.get_by_role("button", name="Approve")).to_be_visible()

    vote = VoteCommand(request.id, "slack", "U0BOB", Verdict.DENY, "not on a Friday")
    await live_inbox.harness.service.vote(vote)

    await expect(page.locator(".status-line")).to_contain_text("Denied by bob", timeout=10_000)
    await expect(page.locator(".status-line")).to_contain_text("not on a Friday")
    await expect(page.get_by_role("button", name="Approve")).to_have_count(0)


async def test_a_new_request_appears_in_the_open_inbox(live_inbox, browser_page):
    await live_inbox.harness.create(title="Deploy web build 1")
    page: Page = browser_page
    await _sign_in(page, live_inbox)
    await expect(page.get_by_role("link", name="Deploy web build 1")).to_be_visible()

    await live_inbox.harness.create(title="Deploy web build 2")

    await expect(page.get_by_role("link", name="Deploy web build 2")).to_be_visible(timeout=10_000)


async def test_a_typed_reason_is_kept_and_the_new_state_offered(live_inbox, browser_page):
    request = await live_inbox.harness.create(title="Deploy web to production")
    page: Page = browser_page
    await _sign_in(page, live_inbox)
    await page.goto(live_inbox.url(f"/requests/{request.id}"))
    await page.get_by_label("Reason for denying (optional)").fill("half written")

    vote = VoteCommand(request.id, "slack", "U0BOB", Verdict.APPROVE)
    await live_inbox.harness.service.vote(vote)

    offer = page.locator("#live-changed")
    await expect(offer).to_contain_text("This page changed since it was loaded.", timeout=10_000)
    await expect(page.get_by_label("Reason for denying (optional)")).to_have_value("half written")
    await offer.get_by_role("link", name="Show the new state").click()
    await expect(page.locator(".status-line")).to_contain_text("Approved by bob")


async def test_the_live_answers_need_a_session_and_change_with_the_request(inbox):
    request = await inbox.create()
    stranger = inbox.client()
    for path in ("/live/inbox", f"/live/requests/{request.id}"):
        refused = await stranger.get(path)
        assert refused.status_code == 401
        assert refused.json() == {"error": "sign in first"}

    alice = await inbox.signed_in("alice")
    assert (await alice.get("/live/requests/not-a-request")).status_code == 404
    before = (await alice.get(f"/live/requests/{request.id}")).json()["token"]
    listed = (await alice.get("/live/inbox")).json()["token"]
    assert (await alice.get(f"/live/requests/{request.id}")).json()["token"] == before

    await inbox.service.vote(VoteCommand(request.id, "slack", "U0BOB", Verdict.APPROVE))

    assert (await alice.get(f"/live/requests/{request.id}")).json()["token"] != before
    assert (await alice.get("/live/inbox")).json()["token"] != listed


async def test_only_pending_pages_follow_their_request(inbox):
    request = await inbox.create()
    alice = await inbox.signed_in("alice")
    pending = await alice.get(f"/requests/{request.id}")
    assert f'content="/live/requests/{request.id}"' in pending.text
    assert '<script src="/static/live.js" defer></script>' in pending.text
    await inbox.service.vote(VoteCommand(request.id, "slack", "U0BOB", Verdict.APPROVE))
    decided = await alice.get(f"/requests/{request.id}")
    assert "signoff-live" not in decided.text
    script = await alice.get("/static/live.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
