"""Approving with edits in the web inbox: the form where the policy allows it, bad params
refused with the page kept, stale pages refused, and the edited proposal shown to the rest."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest

from approvals.machine import Status
from approvals.service import Rules
from signoff_client.canonical import payload_sha256
from tests.web.conftest import PROD
from tests.world import editable_rules

ORIGINAL = {"service": "api", "replicas": 10, "limits": {"cpu": "2", "memory": "4Gi"}}
EDITED = {"service": "api", "replicas": 3, "limits": {"cpu": "2", "memory": "8Gi"}}


@pytest.fixture
def rules() -> Rules:
    return editable_rules()


def page_text(html: str) -> str:
    """The page's words, tags dropped and spaces collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


async def post_approve(inbox, client, request_id, **fields):
    csrf = await inbox.csrf_for(client, request_id)
    return await client.post(f"/requests/{request_id}/approve", data={"csrf_token": csrf} | fields)


async def test_the_edit_form_is_shown_only_where_the_policy_allows_edits(inbox):
    editable = await inbox.create(action="scale.api", params=ORIGINAL)
    fixed = await inbox.create(action="db.migrate", params=PROD)
    alice = await inbox.signed_in("alice")

    shown = (await alice.get(f"/requests/{editable.id}")).text
    absent = (await alice.get(f"/requests/{fixed.id}")).text

    assert 'class="edit-form"' in shown
    assert 'name="params"' in shown
    prefilled = re.search(
        r'<textarea id="edited-params" name="params"[^>]*>([^<]*)</textarea>', shown
    )
    assert prefilled is not None
    assert json.loads(unescape(prefilled.group(1))) == ORIGINAL
    assert f'name="payload_sha256" value="{editable.payload_sha256}"' in shown
    assert 'class="edit-form"' not in absent
    assert 'name="params"' not in absent


async def test_edit_and_approve_approves_the_edited_params(inbox):
    request = await inbox.create(action="scale.api", params=ORIGINAL)
    alice = await inbox.signed_in("alice")

    response = await post_approve(
        inbox,
        alice,
        request.id,
        params=json.dumps(EDITED),
        payload_sha256=request.payload_sha256,
    )

    assert response.status_code == 303
    assert response.headers["location"] == f"/requests/{request.id}?done=edited"
    stored = await inbox.service.get(request.id)
    assert stored.status is Status.APPROVED
    assert stored.edited_params == EDITED
    assert stored.edited_payload_sha256 == payload_sha256("scale.api", EDITED)
    page = page_text((await alice.get(response.headers["location"])).text)
    assert "You approved this request with your edited params" in page
    assert "replicas : 10 → 3" in page
    assert 'limits.memory : "4Gi" → "8Gi"' in page
    assert stored.edited_payload_sha256 in page


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("{not json", "the edited params are not valid JSON"),
        ('["a", "list"]', "must be a JSON object"),
        ("42", "must be a JSON object"),
        ("", "the edited params are empty"),
        ('{"replicas": 3, "replicas": 4}', "the key 'replicas' appears twice"),
        ('{"replicas": NaN}', "NaN is not a JSON value"),
        ("[" * 5000 + "]" * 5000, "nest"),
        ('{"a": ' * 40 + "1" + "}" * 40, "nest at most 32 levels"),
        (json.dumps({"blob": "x" * 300_000}), "larger than 256 KiB"),
    ],
    ids=[
        "bad-json",
        "a-list",
        "a-number",
        "empty",
        "repeated-key",
        "nan",
        "too-deep-for-the-parser",
        "too-deep",
        "too-large",
    ],
)
async def test_bad_edited_params_are_refused_with_the_page_kept(inbox, typed, message):
    request = await inbox.create(action="scale.api", params=ORIGINAL)
    alice = await inbox.signed_in("alice")
    before = await inbox.audit_count()

    response = await post_approve(
        inbox, alice, request.id, params=typed, payload_sha256=request.payload_sha256
    )

    assert response.status_code == 422
    text = page_text(response.text)
    assert "Nothing was recorded" in text
    assert message in text
    if len(typed) < 1000:
        assert unescape(response.text).count(typed) >= 1  # what was typed is kept to fix
    stored = await inbox.service.get(request.id)
    assert stored.status is Status.PENDING
    assert stored.votes == ()
    assert await inbox.audit_count() == before


async def test_params_posted_where_the_policy_forbids_edits_are_refused(inbox):
    request = await inbox.create(action="deploy.run", params={"service": "web"})
    alice = await inbox.signed_in("alice")

    response = await post_approve(
        inbox,
        alice,
        request.id,
        params=json.dumps({"service": "everything"}),
        payload_sha256=request.payload_sha256,
    )

    assert response.status_code == 403
    assert "does not allow editing params" in page_text(response.text)
    stored = await inbox.service.get(request.id)
    assert (stored.status, stored.votes, stored.edited_params) == (Status.PENDING, (), None)


async def test_the_others_see_the_edited_proposal_and_approve_it(inbox):
    request = await inbox.create(action="rescale.api", params=ORIGINAL)
    alice = await inbox.signed_in("alice")
    bob = await inbox.signed_in("bob")
    edited_hash = payload_sha256("rescale.api", EDITED)

    proposed = await post_approve(
        inbox, alice, request.id, params=json.dumps(EDITED), payload_sha256=request.payload_sha256
    )
    assert proposed.headers["location"] == f"/requests/{request.id}?done=proposed"

    page = (await bob.get(f"/requests/{request.id}")).text
    text = page_text(page)
    assert "Approve edited params" in text
    assert "Edited params" in text
    assert "replicas : 10 → 3" in text
    assert f'name="payload_sha256" value="{edited_hash}"' in page
    approved = await post_approve(inbox, bob, request.id, payload_sha256=edited_hash)

    assert approved.status_code == 303
    stored = await inbox.service.get(request.id)
    assert stored.status is Status.APPROVED
    assert stored.approvals() == {"alice", "bob"}
    assert stored.edited_params == EDITED


async def test_a_page_that_showed_the_original_cannot_approve_the_edit(inbox):
    request = await inbox.create(action="rescale.api", params=ORIGINAL)
    alice = await inbox.signed_in("alice")
    bob = await inbox.signed_in("bob")
    bob_csrf = await inbox.csrf_for(bob, request.id)  # bob's page shows the original
    await post_approve(
        inbox, alice, request.id, params=json.dumps(EDITED), payload_sha256=request.payload_sha256
    )

    stale = await bob.post(
        f"/requests/{request.id}/approve",
        data={"csrf_token": bob_csrf, "payload_sha256": request.payload_sha256},
    )

    assert stale.status_code == 409
    text = page_text(stale.text)
    assert "changed since your page showed them" in text
    assert "Approve edited params" in text  # the page now shows the current proposal
    stored = await inbox.service.get(request.id)
    assert [vote.person for vote in stored.votes] == ["alice"]
    assert stored.status is Status.PENDING


async def test_the_requester_cannot_edit_and_approve(inbox):
    request = await inbox.create(action="scale.api", params=ORIGINAL, requested_by="alice")
    alice = await inbox.signed_in("alice")

    response = await post_approve(
        inbox, alice, request.id, params=json.dumps(EDITED), payload_sha256=request.payload_sha256
    )

    assert response.status_code == 403
    assert "someone else must decide it" in page_text(response.text)
    assert (await inbox.service.get(request.id)).edited_params is None
