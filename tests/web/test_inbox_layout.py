"""Every inbox page fits a phone: headless Chromium at 360 x 740, 390 x 844 and 1280 x 800.

Each page is loaded with the kind of content that breaks layouts (a long title, an IBAN, a
300-character unbroken value, nested params, a long deny reason) and must not scroll
sideways: ``document.documentElement.scrollWidth <= innerWidth``. On the request page the
describe line and the params come before the Approve button, so an approver reads what
they approve before the button is in reach.

With ``SIGNOFF_SCREENSHOTS=DIR`` (``make screenshots`` sets it) each page at each size is
also saved as ``DIR/<page>-<width>x<height>.png``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from approvals.describe import DescribeTemplate
from approvals.directory import Directory, Person
from approvals.grants import GrantRule
from approvals.model import ApprovalRequest, Verdict, VoteCommand
from approvals.policy import Match, Policy, PolicySet, Risk
from approvals.service import Rules
from tests.web.conftest import PROD, LiveInbox
from tests.world import make_directory, make_policies

pytestmark = pytest.mark.slow

SIZES = [(360, 740), (390, 844), (1280, 800)]
SCREENSHOTS = os.environ.get("SIGNOFF_SCREENSHOTS")
"""Where ``make screenshots`` wants the pictures (unset: none are taken)."""

PAYMENT = {
    "amount": {"value": 48_250, "currency": "EUR"},
    "payee": {"name": "Müller & Söhne Maschinenbau GmbH", "iban": "DE89 3704 0044 0532 0130 00"},
    "invoice": "INV-2030-000417",
    "memo": "Quarterly maintenance contract, presses 3 and 4, incl. spare parts",
    "reference": "x" * 300,  # no break opportunity at all
}
LONG_TITLE = (
    "Pay invoice INV-2030-000417 to Müller & Söhne Maschinenbau GmbH for the quarterly "
    "maintenance of presses 3 and 4"
)


@pytest.fixture
def rules() -> Rules:
    """The standard rules, with alice reachable by email (for the confirm page) and the
    policies rated and described as an admin would."""
    standard = make_policies().policies
    payments = Policy(
        name="payments",
        match=Match(actions=("payments.*",)),
        risk=Risk.HIGH,
        describe=DescribeTemplate.parse(
            "Pay {params.amount.value} {params.amount.currency} to {params.payee.name}"
        ),
        levels=standard[-1].levels,
    )
    prod_db = DescribeTemplate.parse("{action} on {params.table} in production")
    others = tuple(
        replace(policy, risk=Risk.CRITICAL, describe=prod_db)
        if policy.name == "prod-db"
        else policy
        for policy in standard[:-1]
    )
    # The default policy lets approvers approve for a while (the Grants page has content).
    default = replace(standard[-1], risk=Risk.LOW, grants=GrantRule(max=timedelta(hours=8)))
    policies = PolicySet((*others, payments, default))
    directory = make_directory()
    people = dict(directory.people)
    people["alice"] = Person("alice", {**people["alice"].identities, "email": "alice@example.com"})
    directory = Directory(
        people=people,
        channels=directory.channels,
        platforms=directory.platforms | {"email"},
    )
    return Rules(policies=policies, directory=directory)


async def _sign_in(page: Page, live_inbox: LiveInbox, person: str = "alice") -> None:
    await page.goto(await live_inbox.login_link(person))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Pending requests")).to_be_visible()


async def _payment(live_inbox: LiveInbox) -> ApprovalRequest:
    return await live_inbox.harness.create(
        action="payments.transfer",
        title=LONG_TITLE,
        details="Approved in the budget review of 12 December; the supplier asked twice.",
        params=PAYMENT,
    )


async def _several(live_inbox: LiveInbox) -> list[ApprovalRequest]:
    made = [await _payment(live_inbox)]
    made.append(
        await live_inbox.harness.create(
            action="db.migrate", title="Migrate orders", params={**PROD, "table": "orders"}
        )
    )
    for n in range(3):
        made.append(await live_inbox.harness.create(title=f"Deploy web build {n}"))
    return made


async def _decided(live_inbox: LiveInbox) -> ApprovalRequest:
    request = await _payment(live_inbox)
    vote = VoteCommand(
        request.id,
        "slack",
        "U0BOB",
        Verdict.DENY,
        "The IBAN does not match the one on file for this supplier; call them first. " * 3,
    )
    await live_inbox.harness.service.vote(vote)
    return request


async def login_page(page: Page, live_inbox: LiveInbox) -> None:
    await page.goto(await live_inbox.login_link("alice"))


async def inbox_page(page: Page, live_inbox: LiveInbox) -> None:
    await _several(live_inbox)
    await _sign_in(page, live_inbox)


async def request_page(page: Page, live_inbox: LiveInbox) -> None:
    request = await _payment(live_inbox)
    await _sign_in(page, live_inbox)
    await page.goto(live_inbox.url(f"/requests/{request.id}"))


async def decided_page(page: Page, live_inbox: LiveInbox) -> None:
    request = await _decided(live_inbox)
    await _sign_in(page, live_inbox)
    await page.goto(live_inbox.url(f"/requests/{request.id}"))


async def history_page(page: Page, live_inbox: LiveInbox) -> None:
    await _decided(live_inbox)
    await _sign_in(page, live_inbox)
    await page.goto(live_inbox.url("/history"))


async def audit_page(page: Page, live_inbox: LiveInbox) -> None:
    await _decided(live_inbox)
    await _sign_in(page, live_inbox)
    await page.goto(live_inbox.url("/audit"))


async def _granted(live_inbox: LiveInbox, title: str) -> ApprovalRequest:
    """A deploy request with long params, approved by alice for 8 hours."""
    request = await live_inbox.harness.create(
        title=title, params={"service": "web", "build": PAYMENT["reference"], "n": 1}
    )
    vote = VoteCommand(request.id, "web", "alice", Verdict.APPROVE, grant_for=timedelta(hours=8))
    await live_inbox.harness.service.vote(vote)
    return request


async def grants_page(page: Page, live_inbox: LiveInbox) -> None:
    await _granted(live_inbox, LONG_TITLE)
    await _sign_in(page, live_inbox)
    await page.goto(live_inbox.url("/grants"))


async def request_with_grants_page(page: Page, live_inbox: LiveInbox) -> None:
    request = await live_inbox.harness.create(title=LONG_TITLE, params=PAYMENT)
    await _sign_in(page, live_inbox)
    await page.goto(live_inbox.url(f"/requests/{request.id}"))


async def confirm_page(page: Page, live_inbox: LiveInbox) -> None:
    request = await _payment(live_inbox)
    token = await live_inbox.harness.service.links.issue(
        platform="email",
        identity="alice@example.com",
        request_id=request.id,
        verdict=Verdict.APPROVE,
        expires_at=request.deadline,
    )
    await page.goto(live_inbox.url(f"/confirm/{request.id}/approve/{token}"))


async def _migration(live_inbox: LiveInbox) -> ApprovalRequest:
    """A request under prod-db, rated critical here: its approvals need confirming."""
    return await live_inbox.harness.create(
        action="db.migrate",
        title="Migrate the orders table in production (adds a NOT NULL column)",
        params={**PROD, "table": "orders"},
    )


async def confirm_step_page(page: Page, live_inbox: LiveInbox) -> None:
    request = await _migration(live_inbox)
    await _sign_in(page, live_inbox)
    await page.goto(live_inbox.url(f"/requests/{request.id}"))
    await page.get_by_role("button", name="Approve", exact=True).click()
    await expect(page.get_by_role("heading", name="Confirm your approval")).to_be_visible()


async def expired_link_page(page: Page, live_inbox: LiveInbox) -> None:
    link = await live_inbox.login_link("alice")
    live_inbox.harness.clock.advance(timedelta(minutes=16))
    await page.goto(link)
    await page.get_by_role("button", name="Sign in").click()


PAGES: dict[str, Callable[[Page, LiveInbox], Awaitable[None]]] = {
    "sign-in": login_page,
    "inbox": inbox_page,
    "request": request_page,
    "decided": decided_page,
    "history": history_page,
    "audit": audit_page,
    "confirm": confirm_page,
    "grants": grants_page,
    "request-approve-for": request_with_grants_page,
    "confirm-step": confirm_step_page,
    "expired-link": expired_link_page,
}


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("name", list(PAGES))
async def test_no_page_scrolls_sideways(live_inbox, browser_page, name, size):
    page: Page = browser_page
    width, height = size
    await page.set_viewport_size({"width": width, "height": height})
    await PAGES[name](page, live_inbox)
    await page.wait_for_load_state("load")
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    if SCREENSHOTS:
        # playwright makes the folder
        await page.screenshot(
            path=Path(SCREENSHOTS, f"{name}-{width}x{height}.png"), full_page=True
        )
    scroll_width, inner_width = widths
    assert scroll_width <= inner_width, f"{name} is {scroll_width} px wide in {inner_width} px"


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_the_request_page_shows_what_is_approved_before_the_approve_button(
    live_inbox, browser_page, size
):
    page: Page = browser_page
    await page.set_viewport_size({"width": size[0], "height": size[1]})
    await request_page(page, live_inbox)
    approve = await page.get_by_role("button", name="Approve").bounding_box()
    lead = await page.locator(".lead").bounding_box()
    iban = await page.get_by_text("DE89 3704 0044 0532 0130 00").bounding_box()
    assert approve is not None
    assert lead is not None
    assert iban is not None
    assert lead["y"] < approve["y"]
    assert iban["y"] + iban["height"] <= approve["y"]
    await expect(page.locator(".lead")).to_contain_text(
        "High risk Pay 48250 EUR to Müller & Söhne Maschinenbau GmbH"
    )


async def test_in_the_browser_approve_counts_only_after_confirm_approve(live_inbox, browser_page):
    page: Page = browser_page
    request = await _migration(live_inbox)
    await _sign_in(page, live_inbox)
    await page.goto(live_inbox.url(f"/requests/{request.id}"))
    await page.get_by_role("button", name="Approve", exact=True).click()
    await expect(page.get_by_role("heading", name="Confirm your approval")).to_be_visible()
    await expect(page.get_by_text('"table": "orders"')).to_be_visible()
    service = live_inbox.harness.service
    pending = await service.get(request.id)
    assert pending is not None
    assert pending.votes == ()

    await page.get_by_role("button", name="Confirm approve").click()

    await expect(page.get_by_text("Your approval was counted")).to_be_visible()
    counted = await service.get(request.id)
    assert counted is not None
    assert [vote.person for vote in counted.votes] == ["alice"]
