"""Edit and approve in a real browser (headless Chromium): one approver edits the params
under a quorum of two, the next sees what changed and approves the edited params."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.async_api import expect

from approvals.machine import Status
from approvals.service import Rules
from signoff_client.canonical import payload_sha256
from tests.web.conftest import LiveInbox
from tests.web.test_inbox_browser import screenshot, sign_in, status_becomes
from tests.world import editable_rules

ORIGINAL = {"service": "api", "replicas": 10, "limits": {"memory": "4Gi"}}
EDITED = {"service": "api", "replicas": 3, "limits": {"memory": "8Gi"}}


@pytest.fixture
def rules() -> Rules:
    return editable_rules()


async def test_edit_and_approve_then_a_second_approver_approves_the_edit(
    live_inbox: LiveInbox, browser_page, tmp_path: Path
):
    request = await live_inbox.harness.create(
        action="rescale.api", title="Scale the API", params=ORIGINAL
    )
    page = browser_page
    await sign_in(page, live_inbox, "alice")
    await page.get_by_role("link", name="Scale the API").click()
    editor = page.locator("#edited-params")
    assert json.loads(await editor.input_value()) == ORIGINAL

    await editor.fill("{not json")
    await page.get_by_role("button", name="Edit and approve").click()
    await expect(page.locator(".flash.error")).to_contain_text("not valid JSON")
    await expect(page.locator("#edited-params")).to_have_value("{not json")

    await page.locator("#edited-params").fill(json.dumps(EDITED, indent=2))
    await page.get_by_role("button", name="Edit and approve").click()
    await expect(page.locator(".flash.notice")).to_contain_text(
        "Your edited params were counted as your approval"
    )
    await expect(page.locator(".changes")).to_contain_text("replicas: 10 → 3")
    await screenshot(page, tmp_path, "edit-proposed")

    await page.context.clear_cookies()
    await sign_in(page, live_inbox, "bob")
    await page.get_by_role("link", name="Scale the API").click()
    await expect(page.locator(".edited-notice")).to_be_visible()
    await expect(page.locator(".changes")).to_contain_text('limits.memory: "4Gi" → "8Gi"')
    await page.get_by_role("button", name="Approve edited params", exact=True).click()
    await expect(page.locator(".flash.notice")).to_have_text("You approved this request.")
    decided = await status_becomes(live_inbox, request.id, Status.APPROVED)
    assert decided.edited_params == EDITED
    assert decided.edited_payload_sha256 == payload_sha256("rescale.api", EDITED)
    assert decided.approvals() == {"alice", "bob"}
    await screenshot(page, tmp_path, "edit-approved")
