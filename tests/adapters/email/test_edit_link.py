"""Email cards under a policy that allows edits: an "Edit in inbox" link to the request's
inbox page, beside the Approve / Deny links, in both the text and the HTML part."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from approvals.card import EDIT_LINK_TEXT, inbox_url
from approvals.clock import ManualClock
from approvals.policy import EditsRule, PolicySet
from approvals.store import SqlStore
from bot.runtime import Runtime
from tests.adapters.email.conftest import PUBLIC_URL, body, email_adapter
from tests.adapters.email.test_delivery import ALICE, create, email_rules
from tests.fakes.smtp import FakeSmtpRelay
from tests.world import build_test_runtime


@pytest.fixture
def runtime(store: SqlStore, clock: ManualClock) -> Runtime:
    rules = email_rules()
    editable = tuple(replace(p, edits=EditsRule.ALLOWED) for p in rules.policies.policies)
    return build_test_runtime(store, clock, replace(rules, policies=PolicySet(editable)))


async def test_a_card_links_to_the_inbox_to_edit(tmp_path: Path, runtime: Runtime) -> None:
    relay = FakeSmtpRelay(certificate_dir=tmp_path)
    await relay.start()
    try:
        runtime.dispatcher.use_adapter("email", email_adapter(relay, runtime))
        request_id = await create(runtime)
        await runtime.dispatcher.drain()
        [mail] = relay.to(ALICE)
    finally:
        await relay.stop()

    url = inbox_url(PUBLIC_URL, request_id)
    assert f"{EDIT_LINK_TEXT} (change the params, then approve): {url}" in body(mail)
    assert f'<a href="{url}">{EDIT_LINK_TEXT}</a>' in body(mail, "html")
