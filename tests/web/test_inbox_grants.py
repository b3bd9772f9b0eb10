"""Time-boxed grants in the web inbox: "Approve for ..." on the request page, and the Grants
page that lists the live grants a person may see, each with its Revoke."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from approvals.grants import GrantRule
from approvals.machine import Status
from approvals.model import CreateCommand
from approvals.policy import PolicySet
from approvals.service import Rules
from tests.web.conftest import PROD, InboxHarness, csrf_token_in
from tests.world import make_directory, make_policies

HOUR = timedelta(hours=1)
DEPLOY = CreateCommand(agent="deploy-bot", action="deploy.run", title="Deploy")
"""What ``inbox.create()`` asks, as the agent would ask it again."""


@pytest.fixture
def rules() -> Rules:
    """The standard rules; the default policy allows grants of up to 2 h, and erin is an
    admin who approves nothing."""
    policies = tuple(
        replace(policy, grants=GrantRule(max=2 * HOUR))
        if policy.name in ("default", "prod-db")
        else policy
        for policy in make_policies().policies
    )
    directory = replace(make_directory(), admins=frozenset({"erin"}))
    return Rules(policies=PolicySet(policies), directory=directory)


async def approve_for(inbox: InboxHarness, person: str, request_id: str, seconds: int):
    client = await inbox.signed_in(person)
    csrf = await inbox.csrf_for(client, request_id)
    response = await client.post(
        f"/requests/{request_id}/approve",
        data={"csrf_token": csrf, "grant_seconds": str(seconds)},
    )
    return client, response


async def test_the_request_page_offers_approve_for_the_policys_lengths(inbox):
    request = await inbox.create()
    alice = await inbox.signed_in("alice")
    page = await alice.get(f"/requests/{request.id}")
    assert 'name="grant_seconds" value="900"' in page.text
    assert "Approve for 15 min" in page.text
    assert "Approve for 1 h" in page.text
    assert "Approve for 2 h" in page.text
    other = await inbox.create(action="docs.publish")  # the lenient policy: no grants
    assert "grant_seconds" not in (await alice.get(f"/requests/{other.id}")).text


async def test_approve_for_an_hour_gives_a_grant_that_approves_the_same_ask(inbox):
    request = await inbox.create(params={"service": "web"})
    alice, response = await approve_for(inbox, "alice", request.id, 3600)

    assert response.status_code == 303
    assert response.headers["location"] == f"/requests/{request.id}?done=granted"
    page = await alice.get(response.headers["location"])
    assert "You approved this request and gave a grant" in page.text
    assert "for the same requests until 2030-01-01 01:00 UTC" in page.text
    stored = await inbox.service.get(request.id)
    assert stored.status is Status.APPROVED
    again = await inbox.service.create(
        replace(DEPLOY, params={"service": "web"}, title="Deploy again")
    )
    assert again.request.status is Status.APPROVED
    grant = stored.decision.grant
    detail = await alice.get(f"/requests/{again.request.id}")
    assert f"grant:{grant.id}" in detail.text
    assert f"Approved by alice&#39;s grant {grant.id}" in detail.text


async def test_a_length_beyond_the_policy_is_refused_and_nothing_counts(inbox):
    request = await inbox.create()
    _, response = await approve_for(inbox, "alice", request.id, 3 * 3600)
    assert response.status_code == 422
    assert "allows grants of at most 2 h, not 3 h" in response.text
    assert (await inbox.service.get(request.id)).status is Status.PENDING


@pytest.mark.parametrize("seconds", ["-5", "1h", "9" * 12])
async def test_a_malformed_length_is_refused(inbox, seconds):
    request = await inbox.create()
    alice = await inbox.signed_in("alice")
    csrf = await inbox.csrf_for(alice, request.id)
    response = await alice.post(
        f"/requests/{request.id}/approve", data={"csrf_token": csrf, "grant_seconds": seconds}
    )
    assert response.status_code == 422
    assert (await inbox.service.get(request.id)).status is Status.PENDING


async def test_a_quorum_grant_needs_every_approval_to_ask(inbox):
    request = await inbox.create(action="db.migrate", params=PROD)
    _, first = await approve_for(inbox, "alice", request.id, 3600)
    assert first.headers["location"] == f"/requests/{request.id}?done=voted"
    _, second = await approve_for(inbox, "bob", request.id, 900)
    assert second.headers["location"] == f"/requests/{request.id}?done=granted"
    [grant] = await inbox.service.live_grants()
    assert grant.given_by == ("alice", "bob")
    assert grant.length == timedelta(minutes=15)


async def test_the_grants_page_lists_live_grants_and_revokes_one(inbox):
    request = await inbox.create(params={"service": "web"})
    alice, _ = await approve_for(inbox, "alice", request.id, 3600)
    [grant] = await inbox.service.live_grants()

    page = await alice.get("/grants")

    assert page.status_code == 200
    assert grant.id in page.text
    assert "deploy-bot" in page.text
    assert "deploy.run" in page.text
    assert "all params {&#34;service&#34;: &#34;web&#34;}" in page.text
    assert "2030-01-01 01:00 UTC" in page.text
    revoked = await alice.post(
        f"/grants/{grant.id}/revoke", data={"csrf_token": csrf_token_in(page.text)}
    )
    assert revoked.status_code == 303
    assert revoked.headers["location"] == "/grants?done=revoked"
    after = await alice.get(revoked.headers["location"])
    assert "The grant was revoked" in after.text
    assert "No live grants." in after.text
    again = await inbox.service.create(replace(DEPLOY, params={"service": "web"}))
    assert again.request.status is Status.PENDING


@pytest.mark.parametrize(
    ("person", "sees"),
    [
        pytest.param("bob", True, id="another approver of the policy"),
        pytest.param("erin", True, id="an admin"),
        pytest.param("carol", False, id="someone who approves elsewhere"),
    ],
)
async def test_who_sees_and_may_revoke_a_grant(inbox, person, sees):
    request = await inbox.create()
    await approve_for(inbox, "alice", request.id, 900)
    [grant] = await inbox.service.live_grants()
    client = await inbox.signed_in(person)
    page = await client.get("/grants")
    assert (grant.id in page.text) is sees

    revoked = await client.post(
        f"/grants/{grant.id}/revoke", data={"csrf_token": csrf_token_in(page.text)}
    )

    assert revoked.status_code == (303 if sees else 403)
    assert bool(await inbox.service.live_grants()) is not sees


async def test_revoking_needs_the_csrf_token(inbox):
    request = await inbox.create()
    alice, _ = await approve_for(inbox, "alice", request.id, 900)
    [grant] = await inbox.service.live_grants()
    refused = await alice.post(f"/grants/{grant.id}/revoke", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    assert len(await inbox.service.live_grants()) == 1


async def test_the_grants_page_needs_sign_in(inbox):
    page = await inbox.client().get("/grants")
    assert page.status_code == 401
