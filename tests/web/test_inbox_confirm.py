"""The confirm step in the web inbox and on email links' confirm pages.

Under a policy that needs approvals confirmed, Approve on a request page counts nothing: it
shows the risk, the describe line and the params being approved once more, with a form
that carries the confirmation token, and only that form's POST approves. A POST without a
genuine token is refused, audited, and leaves the request pending. An email link's confirm
page is the confirm step itself: it shows the params and carries the token.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest

from approvals.clock import ManualClock
from approvals.describe import DescribeTemplate
from approvals.machine import Status
from approvals.model import Verdict
from approvals.policy import PolicySet, Risk
from approvals.receipts import ReceiptSigner
from approvals.service import Rules
from approvals.store import SqlStore
from bot.runtime import Runtime
from tests.adapters.email.conftest import address, confirm_client, email_adapter, links_in
from tests.adapters.email.test_delivery import create as create_mailed
from tests.adapters.email.test_delivery import email_rules
from tests.fakes.smtp import FakeSmtpRelay
from tests.world import build_test_runtime, editable_rules

ORIGINAL = {"service": "api", "replicas": 10}
EDITED = {"service": "api", "replicas": 3}
TOKEN_FIELD = re.compile(r'name="confirm_token" value="([^"]+)"')


def critical(rules: Rules) -> Rules:
    """``rules`` with every policy rated critical (so each approval needs confirming)."""
    describe = DescribeTemplate.parse("Scale {params.service} to {params.replicas} replicas")
    policies = tuple(
        replace(policy, risk=Risk.CRITICAL, describe=describe) for policy in rules.policies.policies
    )
    return Rules(PolicySet(policies), rules.directory)


@pytest.fixture
def rules() -> Rules:
    return critical(editable_rules())


def page_text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


async def post_approve(inbox, client, request_id, **fields):
    csrf = await inbox.csrf_for(client, request_id)
    return await client.post(f"/requests/{request_id}/approve", data={"csrf_token": csrf} | fields)


async def last_audit(inbox) -> tuple[str, dict[str, Any]]:
    async with inbox.store.read() as reader:
        entry = (await reader.audit_entries())[-1]
    return entry.kind, json.loads(entry.data)


async def assert_pending_without_votes(inbox, request_id: str) -> None:
    stored = await inbox.service.get(request_id)
    assert (stored.status, stored.votes) == (Status.PENDING, ())


async def test_approve_shows_the_confirm_step_and_counts_nothing(inbox):
    request = await inbox.create(action="scale.api", params=ORIGINAL)
    alice = await inbox.signed_in("alice")
    before = await inbox.audit_count()

    response = await post_approve(inbox, alice, request.id, payload_sha256=request.payload_sha256)

    assert response.status_code == 200
    text = page_text(response.text)
    assert "Confirm your approval" in text
    assert "Critical risk" in text
    assert "Scale api to 10 replicas" in text
    assert '"replicas": 10' in text
    assert TOKEN_FIELD.search(response.text)
    assert "Confirm approve" in text
    await assert_pending_without_votes(inbox, request.id)
    assert await inbox.audit_count() == before


async def test_the_confirm_steps_form_approves_and_the_receipt_says_confirmed(inbox, clock):
    request = await inbox.create(action="scale.api", params=ORIGINAL)
    alice = await inbox.signed_in("alice")
    step = await post_approve(inbox, alice, request.id, payload_sha256=request.payload_sha256)
    token = TOKEN_FIELD.search(step.text)

    assert token is not None
    response = await post_approve(
        inbox,
        alice,
        request.id,
        payload_sha256=request.payload_sha256,
        confirm_token=unescape(token.group(1)),
    )

    assert response.status_code == 303
    assert response.headers["location"] == f"/requests/{request.id}?done=approved"
    stored = await inbox.service.get(request.id)
    assert stored.status is Status.APPROVED
    receipt = await ReceiptSigner(inbox.store, clock).sign(stored)
    assert receipt["receipt"]["confirmed"] is True


async def test_edit_and_approve_confirms_the_edited_params(inbox):
    request = await inbox.create(action="scale.api", params=ORIGINAL)
    alice = await inbox.signed_in("alice")
    fields = {"params": json.dumps(EDITED), "payload_sha256": request.payload_sha256}

    step = await post_approve(inbox, alice, request.id, **fields)

    assert step.status_code == 200
    assert '"replicas": 3' in page_text(step.text)
    token = TOKEN_FIELD.search(step.text)
    assert token is not None
    kept = re.search(r'name="params" value="([^"]*)"', step.text)
    assert kept is not None
    assert json.loads(unescape(kept.group(1))) == EDITED
    response = await post_approve(
        inbox, alice, request.id, confirm_token=unescape(token.group(1)), **fields
    )
    assert response.status_code == 303
    stored = await inbox.service.get(request.id)
    assert (stored.status, stored.edited_params) == (Status.APPROVED, EDITED)


@pytest.mark.parametrize("token", ["forged.AAAAAAAAAAAAAAAA", "bobs"])
async def test_an_approval_posted_with_a_token_not_shown_to_this_person_is_refused(inbox, token):
    request = await inbox.create(action="scale.api", params=ORIGINAL)
    alice = await inbox.signed_in("alice")
    if token == "bobs":
        bob = await inbox.signed_in("bob")
        step = await post_approve(inbox, bob, request.id, payload_sha256=request.payload_sha256)
        found = TOKEN_FIELD.search(step.text)
        assert found is not None
        token = unescape(found.group(1))

    response = await post_approve(
        inbox, alice, request.id, payload_sha256=request.payload_sha256, confirm_token=token
    )

    assert response.status_code == 403
    assert "Your vote was not counted" in page_text(response.text)
    await assert_pending_without_votes(inbox, request.id)
    assert await last_audit(inbox) == (
        "refused",
        {
            "code": "unconfirmed_approval",
            "verdict": "approve",
            "status": "pending",
            "confirm_token": "given",
        },
    )


async def test_the_request_page_says_approve_will_ask_for_a_confirmation(inbox):
    request = await inbox.create(action="scale.api", params=ORIGINAL)
    alice = await inbox.signed_in("alice")

    page = page_text((await alice.get(f"/requests/{request.id}")).text)

    assert "needs each approval confirmed" in page


async def test_deny_needs_no_confirm_step(inbox):
    request = await inbox.create(action="scale.api", params=ORIGINAL)
    alice = await inbox.signed_in("alice")
    csrf = await inbox.csrf_for(alice, request.id)

    response = await alice.post(f"/requests/{request.id}/deny", data={"csrf_token": csrf})

    assert response.status_code == 303
    assert (await inbox.service.get(request.id)).status is Status.DENIED


# -- email links ----------------------------------------------------------------------------


@pytest.fixture
async def mailed(
    store: SqlStore, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[tuple[Runtime, FakeSmtpRelay, httpx.AsyncClient, str]]:
    relay = FakeSmtpRelay(certificate_dir=tmp_path)
    await relay.start()
    runtime = build_test_runtime(store, clock, critical(email_rules()))
    runtime.dispatcher.use_adapter("email", email_adapter(relay, runtime))
    request_id = await create_mailed(runtime, params={"service": "api", "replicas": 10})
    await runtime.dispatcher.drain()
    client = await confirm_client(runtime)
    try:
        yield runtime, relay, client, request_id
    finally:
        await client.aclose()
        await relay.stop()


async def test_an_email_links_confirm_page_shows_the_params_and_its_post_approves(mailed):
    runtime, relay, client, request_id = mailed
    [mail] = relay.to(address("alice"))
    path = links_in(mail)[Verdict.APPROVE]

    page = await client.get(path)

    assert page.status_code == 200
    text = page_text(page.text)
    assert "Scale api to 10 replicas" in text
    assert "Critical risk" in text
    assert '"replicas": 10' in text
    token = TOKEN_FIELD.search(page.text)
    assert token is not None
    answer = await client.post(
        path,
        data={"confirm": "1", "confirm_token": unescape(token.group(1))},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert answer.status_code == 200, answer.text
    stored = await runtime.service.get(request_id)
    assert stored.status is Status.APPROVED


@pytest.mark.parametrize("token", [None, "1.AAAAAAAAAAAAAAAA"])
async def test_an_email_confirm_post_without_a_genuine_token_is_refused(mailed, token):
    runtime, relay, client, request_id = mailed
    [mail] = relay.to(address("alice"))
    path = links_in(mail)[Verdict.APPROVE]
    data = {"confirm": "1"} | ({"confirm_token": token} if token else {})

    answer = await client.post(path, data=data, headers={"Sec-Fetch-Site": "same-origin"})

    # The confirm page again, with why and a fresh confirmation.
    assert answer.status_code == 422
    assert "Your vote was not counted" in page_text(answer.text)
    assert TOKEN_FIELD.search(answer.text)
    stored = await runtime.service.get(request_id)
    assert (stored.status, stored.votes) == (Status.PENDING, ())
    claim = await runtime.service.links.read(path.rsplit("/", 1)[1])
    assert claim is not None
    assert not await runtime.service.links.spent(claim.nonce)
