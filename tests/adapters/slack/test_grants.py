"""Time-boxed grants in Slack: alice picks "Approve for 1 h" on a card, and the agent's
same ask is approved at once by her grant, receipted as such, without a second card."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from approvals.grants import GrantRule
from approvals.machine import Status
from approvals.model import GRANT_PLATFORM
from approvals.policy import PolicySet
from approvals.receipts import receipt_body
from approvals.service import Rules
from tests.adapters.slack.conftest import ALICE, SlackWorld, slack_policies
from tests.waiting import wait_for
from tests.world import make_directory

DEPLOY = {"service": "web", "version": "1.4.2"}


@pytest.fixture
def rules() -> Rules:
    """The Slack scenario policies, each letting approvers approve for up to an hour."""
    granting = tuple(
        replace(policy, grants=GrantRule(max=timedelta(hours=1)))
        for policy in slack_policies().policies
    )
    return Rules(policies=PolicySet(granting), directory=make_directory())


async def test_approve_for_an_hour_in_slack_approves_the_same_ask_at_once(slack: SlackWorld):
    request_id, card = await slack.posted("deploy.web", params=DEPLOY)
    select = card.button("signoff_approve_for")
    assert [option["text"]["text"] for option in select["options"]] == [
        "Approve for 15 min",
        "Approve for 1 h",
    ]

    await slack.fake.choose(
        card, user=ALICE, action_id="signoff_approve_for", option="Approve for 1 h"
    )

    async def approved() -> bool:
        return (await slack.get(request_id)).status is Status.APPROVED

    await wait_for(approved)
    source = await slack.get(request_id)
    assert source.decision is not None
    assert source.decision.grant is not None
    grant = source.decision.grant
    assert grant.given_by == ("alice",)
    assert grant.until - grant.given_at == timedelta(hours=1)
    await slack.deliver()
    assert "for the same requests until" in (await slack.card(request_id)).all_text
    posted = len(slack.fake.calls_to("chat.postMessage"))

    again = await slack.create("deploy.web", params=DEPLOY, title="Deploy web 1.4.2 again")

    assert again.status is Status.APPROVED
    assert again.decision is not None
    assert again.decision.platform == GRANT_PLATFORM
    assert again.decision.grant == grant
    body = receipt_body(again)
    assert body["deciders"] == ["alice"]
    assert body["grant"]["id"] == grant.id
    await slack.deliver()
    assert len(slack.fake.calls_to("chat.postMessage")) == posted  # nobody is asked again

    other = await slack.create("deploy.web", params={**DEPLOY, "version": "1.4.3"})
    assert other.status is Status.PENDING  # other params: asked as usual


async def test_a_forged_length_beyond_the_policy_is_refused(slack: SlackWorld):
    request_id, card = await slack.posted("deploy.web", params=DEPLOY)
    payload = slack.fake.click_payload(card, user=ALICE, action_id="signoff_approve")
    forged = {
        "text": {"type": "plain_text", "text": "Approve for 1 d"},
        "value": f"so1g:86400:{request_id}",
    }
    payload["actions"] = [
        {"type": "static_select", "action_id": "signoff_approve_for", "selected_option": forged}
    ]

    await slack.fake.deliver(payload)

    async def told() -> bool:
        return any("at most 1 h" in e.text for e in slack.fake.ephemerals_for(ALICE))

    await wait_for(told)
    assert (await slack.get(request_id)).status is Status.PENDING
    assert await slack.service.live_grants() == []
