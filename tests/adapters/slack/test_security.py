"""Bad input at the Slack edge that the reliability corpus does not cover: a correctly signed
click, a forged modal submission, and hostile text through modals and private notices.

The corpus-driven B1, B3 and B4 scenarios are in tests/reliability/test_bad_input_slack.py.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from approvals.machine import Status
from tests.adapters.slack.conftest import ALICE, BOB, CHANNEL, RAW_MARKUP, SlackWorld
from tests.waiting import wait_for


def form(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


async def test_a_correctly_signed_click_is_accepted(http_slack):
    slack = http_slack
    request_id, card = await slack.posted()
    body = form(slack.fake.click_payload(card, user=ALICE, action_id="signoff_approve"))
    response = await slack.fake.post_events(body, slack.fake.signed_headers(body))
    assert response.status_code == 200

    async def approved() -> bool:
        return (await slack.get(request_id)).status is Status.APPROVED

    await wait_for(approved)


def refused(slack: SlackWorld, code: str):
    async def check() -> bool:
        return bool(await slack.refusals(code))

    return check


async def test_forged_modal_submission_is_refused(slack):
    request_id, card = await slack.posted("db.migrate")
    other_id, _other = await slack.posted("db.migrate")
    await slack.fake.click(card, user=BOB, action_id="signoff_deny_reason")

    async def opened() -> bool:
        return bool(slack.fake.views)

    await wait_for(opened)
    view = dict(slack.fake.views[0])
    view["private_metadata"] = json.dumps(
        {"value": f"so1:{other_id}", "channel": CHANNEL, "ts": card.ts}
    )
    await slack.fake.submit_view(view, user=BOB, reason="forged")
    await wait_for(refused(slack, "wrong_message"))
    assert (await slack.get(request_id)).status is Status.PENDING
    assert (await slack.get(other_id)).status is Status.PENDING


async def test_injection_corpus_reaches_slack_only_escaped(slack):
    """B6: agent text, params and a deny reason full of markup, through every outbound call."""
    corpus = "<!channel> <!here> <@U1> <#C1> <http://evil|good> @everyone \u202eevil\u200b"
    request = await slack.create(
        "db.migrate",
        params={"env": "prod", corpus: corpus, "big": "x" * 100_000},
        title=corpus,
        details=corpus,
    )
    await slack.deliver()
    card = await slack.card(request.id)
    await slack.fake.click(card, user=ALICE, action_id="signoff_approve")
    await slack.fake.click(card, user=BOB, action_id="signoff_deny_reason")

    async def modal() -> bool:
        return bool(slack.fake.views) and bool(slack.fake.ephemerals_for(ALICE))

    await wait_for(modal)
    await slack.fake.submit_view(slack.fake.views[0], user=BOB, reason=corpus)

    async def denied() -> bool:
        return (await slack.get(request.id)).status is Status.DENIED

    await wait_for(denied)
    await slack.deliver()
    outbound = [c for c in slack.fake.calls if c.method != "auth.test"]
    assert {c.method for c in outbound} >= {
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "views.open",
    }
    for call in outbound:
        text = json.dumps(call.params, ensure_ascii=False)
        assert not RAW_MARKUP.search(text), (call.method, text[:300])
        assert "\u202e" not in text
        assert "\u200b" not in text
    final = await slack.card(request.id)
    assert "&lt;!channel&gt;" in final.all_text
    assert "⟨U+202E⟩" in final.all_text
