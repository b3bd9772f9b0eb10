"""Telegram cards under a policy that allows edits: "Edit in inbox" opens the request's
inbox page, as a URL button where Telegram takes one (https) and as a text link otherwise."""

from __future__ import annotations

import pytest

from adapters.telegram.rendering import render_card
from approvals.card import EDIT_LINK_TEXT, inbox_url
from approvals.machine import Status
from approvals.model import Verdict, VoteCommand
from approvals.service import Rules
from tests.adapters.telegram.test_rendering import make_card
from tests.world import allowing_edits


@pytest.fixture
def rules(rules: Rules) -> Rules:
    return allowing_edits(rules)


def text_links(card) -> dict[str, str]:
    """The card's text links: what each says -> where it goes (offsets in UTF-16 units,
    as Telegram counts them)."""
    units = card.text.encode("utf-16-le")
    return {
        units[2 * entity["offset"] : 2 * (entity["offset"] + entity["length"])].decode(
            "utf-16-le"
        ): entity["url"]
        for entity in card.entities
        if entity["type"] == "text_link"
    }


async def test_a_card_served_over_plain_http_links_to_the_inbox_to_edit(telegram):
    request = await telegram.create()

    card = await telegram.posted_card(request)

    url = inbox_url(telegram.public_url, request.id)
    assert text_links(card)[EDIT_LINK_TEXT] == url
    # The decisions stay buttons with references; no button opens a URL Telegram refuses.
    assert all("callback_data" in button for button in card.buttons())


async def test_a_decided_card_has_no_edit_link(telegram):
    request = await telegram.create()
    await telegram.posted_card(request)
    outcome = await telegram.service.vote(VoteCommand(request.id, "web", "alice", Verdict.APPROVE))
    assert outcome.request.status is Status.APPROVED

    card = await telegram.posted_card(request)

    assert EDIT_LINK_TEXT not in text_links(card)


def test_an_https_card_has_an_edit_url_button():
    card = make_card(edits_allowed=True)

    rendered = render_card(card, "https://signoff.example.org")

    keyboard = rendered.keyboard
    assert keyboard is not None
    urls = [button.url for row in keyboard.inline_keyboard for button in row if button.url]
    assert urls == [inbox_url("https://signoff.example.org", card.request_id)]
    assert EDIT_LINK_TEXT not in rendered.text
    plain = render_card(make_card(), "https://signoff.example.org").keyboard
    assert plain is not None
    assert all(button.url is None for row in plain.inline_keyboard for button in row)
