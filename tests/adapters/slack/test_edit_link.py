"""Slack cards under a policy that allows edits: an "Edit in inbox" URL button to the
request's inbox page, whose clicks Slack reports and the adapter only acknowledges."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.slack.blocks import EDIT_LINK_ACTION
from approvals.card import EDIT_LINK_TEXT, inbox_url
from approvals.machine import Status
from approvals.model import Verdict, VoteCommand
from approvals.service import Rules
from tests.adapters.slack.conftest import ALICE, PUBLIC_URL
from tests.fakes.slack import Message
from tests.world import allowing_edits


@pytest.fixture
def rules(rules: Rules) -> Rules:
    return allowing_edits(rules)


def url_buttons(message: Message) -> list[dict[str, Any]]:
    return [
        element
        for block in message.blocks
        if block.get("type") == "actions"
        for element in block["elements"]
        if "url" in element
    ]


async def test_a_pending_card_links_to_the_inbox_to_edit(http_slack):
    request_id, card = await http_slack.posted()

    [link] = url_buttons(card)

    assert link["text"]["text"] == EDIT_LINK_TEXT
    assert link["url"] == inbox_url(PUBLIC_URL, request_id)
    assert "style" not in link  # a link, not a decision
    # The other buttons stay the decisions they were.
    labels = [
        e["text"]["text"] for b in card.blocks if b.get("type") == "actions" for e in b["elements"]
    ]
    assert labels[0] == "Approve"


async def test_a_decided_card_has_no_edit_link(http_slack):
    request_id, _card = await http_slack.posted()
    outcome = await http_slack.service.vote(
        VoteCommand(request_id, "web", "alice", Verdict.APPROVE)
    )
    assert outcome.request.status is Status.APPROVED
    await http_slack.deliver()

    assert url_buttons(await http_slack.card(request_id)) == []


async def test_a_click_on_the_edit_link_is_acknowledged_and_decides_nothing(http_slack):
    request_id, card = await http_slack.posted()
    audit_before = len(await http_slack.audit(request_id))

    ack = await http_slack.fake.click(card, user=ALICE, action_id=EDIT_LINK_ACTION)

    assert ack["status"] == 200
    request = await http_slack.get(request_id)
    assert (request.status, request.votes) == (Status.PENDING, ())
    assert len(await http_slack.audit(request_id)) == audit_before
