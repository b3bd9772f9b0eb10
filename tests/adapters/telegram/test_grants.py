"""Time-boxed grants in Telegram: alice presses "✅ for 1 h" on a card, and the agent's same
ask is approved at once by her grant, without a second card."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from adapters.telegram.callbacks import ButtonAction, ButtonRef, decode_button, encode_button
from approvals.grants import GrantRule
from approvals.machine import Status
from approvals.model import GRANT_PLATFORM
from approvals.policy import PolicySet
from approvals.service import Rules
from tests.adapters.telegram.conftest import ALICE, telegram_policies
from tests.world import make_directory

DEPLOY = {"service": "web", "version": "1.4.2"}


@pytest.fixture
def rules() -> Rules:
    """The Telegram scenario policies, each letting approvers approve for up to an hour."""
    granting = tuple(
        replace(policy, grants=GrantRule(max=timedelta(hours=1)))
        for policy in telegram_policies().policies
    )
    return Rules(policies=PolicySet(granting), directory=make_directory())


async def test_approve_for_an_hour_in_telegram_approves_the_same_ask_at_once(telegram):
    request = await telegram.create(params=DEPLOY)
    card = await telegram.posted_card(request)
    labels = [button["text"] for button in card.buttons()]
    assert "✅ for 15 min" in labels
    assert "✅ for 1 h" in labels

    await telegram.click(ALICE, card, "for 1 h")

    source = await telegram.service.get(request.id)
    assert source.status is Status.APPROVED
    assert source.decision is not None
    assert source.decision.grant is not None
    grant = source.decision.grant
    assert grant.given_by == ("alice",)
    assert grant.until - grant.given_at == timedelta(hours=1)
    await telegram.deliver()
    sent = len(telegram.fake.sent())

    again = await telegram.create(params=DEPLOY, title="Deploy web 1.4.2 again")

    assert again.status is Status.APPROVED
    assert again.decision is not None
    assert again.decision.platform == GRANT_PLATFORM
    assert again.decision.grant == grant
    await telegram.deliver()
    assert len(telegram.fake.sent()) == sent  # nobody is asked again


async def test_a_forged_length_beyond_the_policy_is_refused(telegram):
    request = await telegram.create(params=DEPLOY)
    card = await telegram.posted_card(request)
    forged = encode_button(ButtonRef(ButtonAction.APPROVE, request.id, grant_seconds=86400))

    update = await telegram.fake.click(ALICE, card, forged)

    assert "at most 1 h" in await telegram.toast(update)
    assert (await telegram.service.get(request.id)).status is Status.PENDING
    assert await telegram.service.live_grants() == []


@pytest.mark.parametrize(
    "data",
    ["so1:g:abc", "so1:g-5:abc", "so1:g1234567890:abc", "so1:gx:abc", "so1:g60:"],
)
def test_malformed_grant_references_are_not_ours(data):
    assert decode_button(data) is None
