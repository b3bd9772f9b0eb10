"""Bad input at the Discord edge that the reliability corpus does not cover: forged
deny-with-reason clicks and modal submissions, hostile text through modals and private
notices, and many reason clicks at once.

The corpus-driven B3 and B4 scenarios are in tests/reliability/test_bad_input_discord.py.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from approvals.machine import Status
from tests.adapters.discord.conftest import ALICE, CAROL, RAW_MENTION, answered
from tests.waiting import wait_for

INJECTION_CORPUS = [
    "<!channel>",
    "<!here>",
    "<@U1>",
    "<http://evil|good>",
    "@everyone",
    "@here",
    "<@123456789012345678>",
    "<@!123456789012345678>",
    "<@&123456789012345678>",
    "<@&role>",
    "<#300001>",
    "[good](http://evil)",
    "**bold** __under__ ~~strike~~ ||spoiler|| `code` ```block```",
    "# heading\n> quote\n- list",
    "<b>html</b> &amp; <script>alert(1)</script>",
    "_*[]()~`>#+-=|{}.!\\",
    "right-to-left \u202eevil\u202c and isolate \u2066x\u2069",
    "zero\u200bwidth\u200d joiner\ufeff",
    "👍" * 700,
    "x" * 100_000,
]
MASKED_LINK = re.compile(r"(?<!\\)\[[^\]]*\]\((?!http://127\.0\.0\.1:8080/requests/)")
"""A markdown masked link that is not our own inbox link."""


async def refused_and_audited(world, user, code, words):
    await wait_for(world.told(user, words))
    await wait_for(lambda: world.refusals(code))


async def test_forged_deny_with_reason_is_refused_without_a_modal(discord_world):
    world = discord_world
    _request_id, card = await world.posted()
    click = await world.fake.click(
        card, user=ALICE, label="Deny with reason…", message_id="600000000000099999"
    )
    await refused_and_audited(world, ALICE, "wrong_message", "not the card signoff posted")
    assert click.modal is None
    assert click.response_types == [4]


async def test_modal_submitted_for_another_message_is_refused(discord_world):
    world = discord_world
    request_id, card = await world.posted("db.migrate")
    click = await world.fake.click(card, user=CAROL, label="Deny…")
    await wait_for(answered(click))
    await world.fake.submit_modal(click, reason="no", message_id="600000000000099999")
    await refused_and_audited(world, CAROL, "wrong_message", "not the card signoff posted")
    assert (await world.get(request_id)).status is Status.PENDING


def _shown_texts(payload: dict[str, Any]) -> list[str]:
    """Every piece of text a payload shows: content, and each embed's title, description,
    field names and values, and footer."""
    texts = [str(payload.get("content") or "")]
    for embed in payload.get("embeds") or []:
        texts += [str(embed.get("title", "")), str(embed.get("description", ""))]
        texts += [str(embed.get("footer", {}).get("text", ""))]
        for item in embed.get("fields", []):
            texts += [str(item["name"]), str(item["value"])]
    return texts


async def test_injection_corpus_is_inert_and_mentions_are_off_everywhere(discord_world):
    world = discord_world
    params: dict[str, Any] = {f"p{n}": text for n, text in enumerate(INJECTION_CORPUS)}
    params.update({text[:50]: n for n, text in enumerate(INJECTION_CORPUS)})
    request_ids = []
    for text in INJECTION_CORPUS:
        request = await world.create(
            title=text, details=text, params=params, agent=text[:200], action="deploy.web"
        )
        request_ids.append(request.id)
    await world.deliver()
    # Deny one with a hostile reason through the modal, refuse a click, remind, and decide.
    card = await world.card(request_ids[0])
    click = await world.fake.click(card, user=ALICE, label="Deny with reason…")
    await wait_for(answered(click))
    await world.fake.submit_modal(click, reason=" ".join(INJECTION_CORPUS[:18]))
    await wait_for(world.status_is(request_ids[0], Status.DENIED))
    await world.fake.click(card, user=CAROL, label="Approve")
    await wait_for(world.told(CAROL, "already denied"))
    await world.deliver()

    payloads = world.fake.outbound_payloads()
    assert len(payloads) >= len(INJECTION_CORPUS) + 2
    for payload in payloads:
        assert payload["allowed_mentions"]["parse"] == []
        assert not payload["allowed_mentions"].get("users")
        assert not payload["allowed_mentions"].get("roles")
        for text in _shown_texts(payload):
            assert not RAW_MENTION.search(text), text[:300]
            assert not MASKED_LINK.search(text), text[:300]
            for hidden in ("\u202e", "\u2066", "\u200d", "\ufeff"):
                assert hidden not in text
    for request_id in request_ids:
        posted = await world.card(request_id)
        embed = posted.embed
        # The structure is ours: the fixed fields in their places, whatever the agent wrote.
        names = [f["name"] for f in embed["fields"]]
        assert names[:6] == ["Agent", "Action", "Policy", "Level", "Deadline", "Payload SHA-256"]
        assert names[-1] == "Status"
        request = await world.get(request_id)
        assert request.payload_sha256[:12] in posted.field("Payload SHA-256")
        assert len(posted.content) <= 2000
        assert len(embed["title"]) <= 256
        assert all(len(f["value"]) <= 1024 and len(f["name"]) <= 256 for f in embed["fields"])
        assert f"http://127.0.0.1:8080/requests/{request_id}" in embed["description"]
    shown = (await world.card(request_ids[16])).all_text
    assert "⟨U+202E⟩" in shown
    assert "⟨U+2066⟩" in shown
    assert "⟨U+200B⟩" in (await world.card(request_ids[17])).all_text


async def test_many_clicks_at_once_are_each_answered_quickly(discord_world):
    world = discord_world
    request_id, card = await world.posted()
    clicks = await asyncio.gather(
        *(world.fake.click(card, user=CAROL, label="Deny with reason…") for _ in range(10))
    )
    for click in clicks:
        await wait_for(answered(click))
        assert click.response_types == [9]
    assert (await world.get(request_id)).status is Status.PENDING
