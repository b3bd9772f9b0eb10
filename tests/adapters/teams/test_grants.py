"""Time-boxed grants in Teams: alice presses "Approve for 1 h" on a card, and the agent's
same ask is approved at once by her grant, without a second card."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from adapters.teams.cards import APPROVE
from approvals.grants import GrantRule
from approvals.machine import Status
from approvals.model import GRANT_PLATFORM
from approvals.policy import PolicySet
from approvals.service import Rules
from tests.adapters.teams.conftest import ALICE, CHANNEL, TeamsWorld
from tests.fakes.teams import Message, card_actions

DEPLOY = {"service": "web", "version": "1.4.2"}


@pytest.fixture
def rules(rules: Rules) -> Rules:
    """The Teams scenario policies, each letting approvers approve for up to an hour."""
    granting = tuple(
        replace(policy, grants=GrantRule(max=timedelta(hours=1)))
        for policy in rules.policies.policies
    )
    return replace(rules, policies=PolicySet(granting))


async def press(teams: TeamsWorld, card: Message, data: dict[str, Any]) -> dict[str, Any]:
    activity = teams.fake.invoke_activity(card, user_aad_id=ALICE, verb=APPROVE, data=data)
    response = await teams.client.post(activity)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_approve_for_an_hour_in_teams_approves_the_same_ask_at_once(teams: TeamsWorld):
    request_id, card = await teams.posted("deploy.web", params=DEPLOY)
    offered = {action["title"]: action["data"] for action in card_actions(card)}
    assert "Approve for 15 min" in offered
    assert offered["Approve for 1 h"]["grant_seconds"] == 3600

    await press(teams, card, offered["Approve for 1 h"])

    source = await teams.get(request_id)
    assert source.status is Status.APPROVED
    assert source.decision is not None
    assert source.decision.grant is not None
    grant = source.decision.grant
    assert grant.given_by == ("alice",)
    assert grant.until - grant.given_at == timedelta(hours=1)
    await teams.deliver()
    posted = len(teams.fake.posts_in(CHANNEL))

    again = await teams.create("deploy.web", params=DEPLOY, title="Deploy web 1.4.2 again")

    assert again.status is Status.APPROVED
    assert again.decision is not None
    assert again.decision.platform == GRANT_PLATFORM
    assert again.decision.grant == grant
    await teams.deliver()
    assert len(teams.fake.posts_in(CHANNEL)) == posted  # nobody is asked again


@pytest.mark.parametrize(
    ("seconds", "says"),
    [
        pytest.param(86400, "at most 1 h", id="beyond the policy"),
        pytest.param("3600", "not made by signoff", id="not a number"),
        pytest.param(True, "not made by signoff", id="true"),
    ],
)
async def test_a_forged_length_is_refused(teams: TeamsWorld, seconds, says):
    request_id, card = await teams.posted("deploy.web", params=DEPLOY)
    data = {"action": APPROVE, "request": request_id, "grant_seconds": seconds}

    answer = await press(teams, card, data)

    assert says in str(answer.get("value"))
    assert (await teams.get(request_id)).status is Status.PENDING
    assert await teams.service.live_grants() == []
