"""B6: agent text full of mention, link and markup tricks reaches Telegram as inert text."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from adapters.telegram.pacing import SendLimit
from approvals.model import Verdict, VoteCommand
from tests.adapters.telegram.conftest import GROUP, SLACK_ALICE, TelegramHarness

INJECTION_CORPUS = [
    "<!channel>",
    "<!here>",
    "<@U1>",
    "<http://evil|good>",
    "@everyone",
    "@here",
    "@durov please click",
    "<@&role>",
    "[good](http://evil)",
    "https://evil.example.com/login?next=/",
    "evil.com and www.evil.org",
    "mail@evil.com #urgent /start $USD",
    '</code></pre><a href="http://evil">click</a><b>',
    "<b>unclosed <i>tags",
    "&amp; &lt; &bogus; &#0; & ; <>",
    "*bold* _it_ `code` ~s~ ||spoiler|| \\ [x](y) > quote",
    "invoice\u202egpj.exe",
    "\u2066isolated\u2069 and \u200bzero\u200dwidth\ufeff",
    "x" * 100_000,
    "🙂" * 5_000,
    "a" * 4_095 + "🙂",
]
ALLOWED_ENTITIES = {"bold", "italic", "code", "pre", "text_link"}


@pytest.fixture
def adapter_options() -> dict[str, Any]:
    # More cards than Telegram's 20 a minute to one group: lift the limit for this test.
    return {"group_limit": SendLimit(1000, timedelta(seconds=1))}


def check_entities(telegram: TelegramHarness, request_id: str, entities: list[dict]) -> None:
    for entity in entities:
        assert entity["type"] in ALLOWED_ENTITIES, entity
        if entity["type"] == "text_link":
            assert entity["url"] == f"{telegram.public_url}/requests/{request_id}"


@pytest.mark.parametrize("mode", ["polling"])
async def test_injection_corpus_in_agent_text_parses_and_makes_no_mentions_or_links(
    telegram: TelegramHarness,
):
    requests = []
    for number, text in enumerate(INJECTION_CORPUS):
        request = await telegram.create(
            agent=f"agent-{number}{text[:50]}",
            title=text,
            details=text,
            params={"env": "prod", text[:200]: text, "nested": {"value": [text]}},
        )
        requests.append(request)
    await telegram.deliver()
    for request in requests:
        outcome = await telegram.service.vote(
            VoteCommand(request.id, "slack", SLACK_ALICE, Verdict.DENY, reason=request.title[:2000])
        )
        assert outcome.request.status.value == "denied"
    await telegram.deliver()

    calls = telegram.fake.sent("sendMessage", ok_only=False)
    calls += telegram.fake.sent("editMessageText", ok_only=False)
    assert [c.status for c in calls] == [200] * 2 * len(INJECTION_CORPUS)
    for request in requests:
        card = telegram.fake.card_for(request.id, GROUP)
        assert card is not None
        assert card.edits == 1
        check_entities(telegram, request.id, card.entities)
        assert len(card.text.encode("utf-16-le")) // 2 <= 4096
        assert request.payload_sha256[:12] in card.text
    bidi = telegram.fake.card_for(requests[16].id, GROUP)
    assert "invoice⟨U+202E⟩gpj.exe" in bidi.text
    hidden = telegram.fake.card_for(requests[17].id, GROUP)
    assert "⟨U+2066⟩isolated⟨U+2069⟩" in hidden.text
    assert "⟨U+200B⟩zero⟨U+200D⟩width⟨U+FEFF⟩" in hidden.text
