"""The web inbox in a real browser (headless Chromium) against a live server on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from playwright.async_api import Page, expect

from approvals.machine import Status
from tests.waiting import wait_for
from tests.web.conftest import PROD, LiveInbox


async def sign_in(page: Page, live_inbox: LiveInbox, person: str) -> None:
    await page.goto(await live_inbox.login_link(person))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Pending requests")).to_be_visible()


async def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=path, full_page=True)
    assert path.exists()
    assert path.stat().st_size > 0


async def status_becomes(live_inbox: LiveInbox, request_id: str, status: Status):
    async def reached():
        request = await live_inbox.harness.service.get(request_id)
        assert request is not None
        return request if request.status is status else None

    return await wait_for(reached)


async def test_sign_in_through_the_link_shows_the_inbox(live_inbox, browser_page, tmp_path):
    await live_inbox.harness.create(title="Deploy web to production")
    page = browser_page
    await page.goto(await live_inbox.login_link("alice"))
    await expect(page.get_by_role("heading", name="Sign in to signoff")).to_be_visible()
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(live_inbox.url("/"))
    await expect(page.get_by_role("heading", name="Pending requests")).to_be_visible()
    await expect(page.get_by_role("link", name="Deploy web to production")).to_be_visible()
    await expect(page.locator(".who")).to_have_text("Signed in as alice")
    await expect(page.locator(".badge.vote")).to_have_text("your vote")
    await screenshot(page, tmp_path, "sign-in")


async def test_approve_in_the_browser(live_inbox, browser_page, tmp_path):
    request = await live_inbox.harness.create(
        title="Deploy web to production", details="Release 4.2 with the new checkout."
    )
    page = browser_page
    await sign_in(page, live_inbox, "alice")
    await page.get_by_role("link", name="Deploy web to production").click()
    await expect(page.locator(".payload")).to_contain_text('"service": "web"')
    await expect(page.locator(".hash")).to_have_text(request.payload_sha256)
    await page.get_by_role("button", name="Approve").click()
    await expect(page.locator(".flash.notice")).to_have_text("You approved this request.")
    await expect(page.locator(".status-line")).to_contain_text("Approved by alice")
    await expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    decided = await status_becomes(live_inbox, request.id, Status.APPROVED)
    assert decided.decision.platform == "web"
    await screenshot(page, tmp_path, "approve")


async def test_deny_with_a_reason_in_the_browser(live_inbox, browser_page, tmp_path):
    request = await live_inbox.harness.create(
        action="db.migrate", title="Migrate orders", params={**PROD, "table": "orders"}
    )
    page = browser_page
    await sign_in(page, live_inbox, "bob")
    await page.get_by_role("link", name="Migrate orders").click()
    reason = page.get_by_label("Reason for denying (required)")
    # The policy wants a reason: the browser will not send the form without one.
    assert await reason.evaluate("field => field.validity.valueMissing") is True
    await reason.fill("Not during the freeze")
    await page.get_by_role("button", name="Deny").click()
    await expect(page.locator(".flash.notice")).to_have_text("You denied this request.")
    await expect(page.locator(".status-line")).to_contain_text(
        "Denied by bob at 2030-01-01 00:00 UTC (reason: Not during the freeze)"
    )
    denied = await status_becomes(live_inbox, request.id, Status.DENIED)
    assert denied.decision.reason == "Not during the freeze"
    await screenshot(page, tmp_path, "deny")


async def test_vote_by_someone_not_yet_an_approver_is_refused(live_inbox, browser_page, tmp_path):
    request = await live_inbox.harness.create(
        action="db.migrate", title="Migrate orders", params=PROD
    )
    page = browser_page
    await sign_in(page, live_inbox, "carol")  # approves at level 2; the request is at level 1
    await page.get_by_role("link", name="Migrate orders").click()
    async with page.expect_navigation() as navigation:
        await page.get_by_role("button", name="Approve").click()
    assert (await navigation.value).status == 403
    await expect(page.locator(".flash.error")).to_have_text(
        "Your vote was not counted: carol is not an approver for this request at its current level."
    )
    assert (await live_inbox.harness.service.get(request.id)).votes == ()
    await screenshot(page, tmp_path, "refused")


async def test_expired_sign_in_link_is_refused(live_inbox, browser_page, tmp_path):
    link = await live_inbox.login_link("alice")
    live_inbox.harness.clock.advance(timedelta(minutes=16))
    page = browser_page
    await page.goto(link)
    async with page.expect_navigation() as navigation:
        await page.get_by_role("button", name="Sign in").click()
    assert (await navigation.value).status == 403
    await expect(
        page.get_by_role("heading", name="Sign-in link invalid or expired")
    ).to_be_visible()
    await expect(page.locator("pre.command")).to_have_text("signoff login-link NAME")
    await screenshot(page, tmp_path, "expired-link")
    await page.goto(live_inbox.url("/"))
    await expect(page.get_by_role("heading", name="Sign in needed")).to_be_visible()


async def test_tampered_csrf_token_is_refused(live_inbox, browser_page, tmp_path):
    request = await live_inbox.harness.create(title="Deploy web to production")
    page = browser_page
    await sign_in(page, live_inbox, "alice")
    await page.get_by_role("link", name="Deploy web to production").click()
    await page.evaluate(
        "document.querySelector('.approve-form input[name=csrf_token]').value = 'tampered'"
    )
    async with page.expect_navigation() as navigation:
        await page.get_by_role("button", name="Approve").click()
    assert (await navigation.value).status == 403
    await expect(page.get_by_role("heading", name="Form refused")).to_be_visible()
    await expect(page.get_by_text("nothing was recorded")).to_be_visible()
    stored = await live_inbox.harness.service.get(request.id)
    assert stored.status is Status.PENDING
    assert stored.votes == ()
    await screenshot(page, tmp_path, "csrf-refused")
