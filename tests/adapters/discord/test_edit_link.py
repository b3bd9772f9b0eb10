"""Discord cards under a policy that allows edits: an "Edit in inbox" link button (style
5, a URL, no custom_id: Discord sends no interaction for it) to the request's inbox page."""

from __future__ import annotations

import pytest

from approvals.card import EDIT_LINK_TEXT, inbox_url
from approvals.machine import Status
from approvals.model import Verdict, VoteCommand
from approvals.service import Rules
from tests.adapters.discord.conftest import PUBLIC_URL
from tests.world import allowing_edits

LINK_STYLE = 5


@pytest.fixture
def rules(rules: Rules) -> Rules:
    return allowing_edits(rules)


async def test_a_pending_card_has_an_edit_link_button(discord_world):
    request_id, card = await discord_world.posted()

    link = card.button(EDIT_LINK_TEXT)

    assert link["style"] == LINK_STYLE
    assert link["url"] == inbox_url(PUBLIC_URL, request_id)
    assert "custom_id" not in link
    assert card.button("Approve")["custom_id"]


async def test_a_decided_card_has_no_buttons_left(discord_world):
    request_id, _card = await discord_world.posted()
    outcome = await discord_world.service.vote(
        VoteCommand(request_id, "web", "alice", Verdict.APPROVE)
    )
    assert outcome.request.status is Status.APPROVED
    await discord_world.deliver()

    assert (await discord_world.card(request_id)).buttons == []
