"""Time-boxed grants in Discord: alice clicks "Approve for 1 h" on a card, and the agent's
same ask is approved at once by her grant, without a second card."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from adapters.discord.references import Reference, Verb, decode, encode
from approvals.grants import GrantRule
from approvals.machine import Status
from approvals.model import GRANT_PLATFORM
from approvals.policy import PolicySet
from approvals.service import Rules
from tests.adapters.discord.conftest import ALICE, DiscordWorld, discord_policies
from tests.waiting import wait_for
from tests.world import make_directory

DEPLOY = {"service": "web", "version": "1.4.2"}


@pytest.fixture
def rules() -> Rules:
    """The Discord scenario policies, each letting approvers approve for up to an hour."""
    granting = tuple(
        replace(policy, grants=GrantRule(max=timedelta(hours=1)))
        for policy in discord_policies().policies
    )
    return Rules(policies=PolicySet(granting), directory=make_directory())


async def test_approve_for_an_hour_in_discord_approves_the_same_ask_at_once(
    discord_world: DiscordWorld,
):
    request_id, card = await discord_world.posted("deploy.web", params=DEPLOY)
    labels = [button.get("label") for button in card.buttons]
    assert "Approve for 15 min" in labels
    assert "Approve for 1 h" in labels

    await discord_world.fake.click(card, user=ALICE, label="Approve for 1 h")

    async def approved() -> bool:
        return (await discord_world.get(request_id)).status is Status.APPROVED

    await wait_for(approved)
    source = await discord_world.get(request_id)
    assert source.decision is not None
    assert source.decision.grant is not None
    grant = source.decision.grant
    assert grant.given_by == ("alice",)
    assert grant.until - grant.given_at == timedelta(hours=1)
    await discord_world.deliver()
    posted = len(discord_world.fake.posts_in(card.channel_id))

    again = await discord_world.create("deploy.web", params=DEPLOY, title="Deploy web 1.4.2 again")

    assert again.status is Status.APPROVED
    assert again.decision is not None
    assert again.decision.platform == GRANT_PLATFORM
    assert again.decision.grant == grant
    await discord_world.deliver()
    assert len(discord_world.fake.posts_in(card.channel_id)) == posted  # nobody is asked again


async def test_a_forged_length_beyond_the_policy_is_refused(discord_world: DiscordWorld):
    request_id, card = await discord_world.posted("deploy.web", params=DEPLOY)
    forged = encode(Verb.APPROVE, request_id, 86400)

    await discord_world.fake.click(card, user=ALICE, custom_id=forged)

    await wait_for(discord_world.told(ALICE, "at most 1 h"))
    assert (await discord_world.get(request_id)).status is Status.PENDING
    assert await discord_world.service.live_grants() == []


@pytest.mark.parametrize(
    ("custom_id", "reference"),
    [
        pytest.param("so1:g900:abc", Reference(Verb.APPROVE, "abc", 900), id="fifteen minutes"),
        pytest.param("so1:g:abc", None, id="no length"),
        pytest.param("so1:g-5:abc", None, id="negative"),
        pytest.param("so1:g1234567890:abc", None, id="too long"),
        pytest.param("so1:g60:", None, id="no request"),
    ],
)
def test_grant_references_decode_only_when_well_formed(custom_id, reference):
    assert decode(custom_id) == reference
