"""Teams cards under a policy that allows edits: an "Edit in inbox" Action.OpenUrl to the
request's inbox page next to the decisions."""

from __future__ import annotations

from typing import Any

import pytest

from approvals.card import EDIT_LINK_TEXT, inbox_url
from approvals.machine import Status
from approvals.model import Verdict, VoteCommand
from approvals.outcomes import Applied
from approvals.service import Rules
from tests.adapters.teams.conftest import PUBLIC_URL, TeamsWorld
from tests.world import allowing_edits


@pytest.fixture
def rules(rules: Rules) -> Rules:
    return allowing_edits(rules)


def open_urls(card: dict[str, Any]) -> dict[str, str]:
    return {
        action["title"]: action["url"]
        for action in card.get("actions", [])
        if action["type"] == "Action.OpenUrl"
    }


async def test_a_pending_card_opens_the_inbox_to_edit(teams: TeamsWorld) -> None:
    request_id, message = await teams.posted()

    assert message.card is not None
    assert open_urls(message.card)[EDIT_LINK_TEXT] == inbox_url(PUBLIC_URL, request_id)


async def test_a_decided_card_has_no_edit_link(teams: TeamsWorld) -> None:
    request_id, _message = await teams.posted()
    outcome = await teams.service.vote(VoteCommand(request_id, "web", "alice", Verdict.APPROVE))
    assert isinstance(outcome, Applied)
    assert outcome.request.status is Status.APPROVED
    await teams.deliver()

    message = await teams.card(request_id)
    assert message.card is not None
    assert EDIT_LINK_TEXT not in open_urls(message.card)
