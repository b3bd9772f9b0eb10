"""Bad input at the Slack edge: bad signatures (B1), replays (B3), forged clicks (B4)."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest

from approvals.machine import Status
from tests.adapters.slack.conftest import ALICE, BOB, CHANNEL, RAW_MARKUP, SlackWorld
from tests.adapters.slack.fake_slack import TEAM_ID
from tests.waiting import wait_for


def form(payload: dict) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


async def nothing_happened(slack: SlackWorld, request_id: str, calls_before: int) -> None:
    """No handler ran: the request is untouched and the app called no Web API."""
    request = await slack.get(request_id)
    assert request.status is Status.PENDING
    assert request.votes == ()
    assert len(slack.fake.calls) == calls_before
    kinds = [e.kind for e in await slack.audit()]
    assert "refused" not in kinds
    assert "voted" not in kinds


@pytest.mark.parametrize(
    "tamper",
    [
        "unsigned",
        "wrong_secret",
        "stale",
        "future",
        "one_byte_changed",
        "signature_of_another_body",
        "timestamp_not_a_number",
        "empty_signature",
    ],
)
async def test_bad_signatures_get_401_and_no_handler_runs(http_slack, tamper):
    slack = http_slack
    request_id, card = await slack.posted()
    body = form(slack.fake.click_payload(card, user=ALICE, action_id="signoff_approve"))
    now = int(time.time())
    headers = slack.fake.signed_headers(body)
    if tamper == "unsigned":
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    elif tamper == "wrong_secret":
        headers = slack.fake.signed_headers(body, secret="not-the-secret")
    elif tamper == "stale":
        headers = slack.fake.signed_headers(body, timestamp=now - 301)
    elif tamper == "future":
        headers = slack.fake.signed_headers(body, timestamp=now + 301)
    elif tamper == "one_byte_changed":
        index = body.index(b"signoff_approve")
        body = body[:index] + b"S" + body[index + 1 :]
    elif tamper == "signature_of_another_body":
        headers = slack.fake.signed_headers(body + b"&x=1")
    elif tamper == "timestamp_not_a_number":
        headers["X-Slack-Request-Timestamp"] = "soon"
    elif tamper == "empty_signature":
        headers["X-Slack-Signature"] = ""
    calls_before = len(slack.fake.calls)

    response = await slack.fake.post_events(body, headers)

    assert response.status_code == 401
    await nothing_happened(slack, request_id, calls_before)


@pytest.mark.parametrize("encoding", ["form", "json"])
async def test_ssl_check_smuggling_gets_401(http_slack, encoding):
    slack = http_slack
    request_id, card = await slack.posted()
    payload = slack.fake.click_payload(card, user=ALICE, action_id="signoff_approve")
    if encoding == "form":
        body = urlencode({"ssl_check": "1", "token": "x", "payload": json.dumps(payload)}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    else:
        body = json.dumps({"ssl_check": "1", **payload}).encode()
        headers = {"Content-Type": "application/json"}
    calls_before = len(slack.fake.calls)

    response = await slack.fake.post_events(body, headers)

    assert response.status_code == 401
    await nothing_happened(slack, request_id, calls_before)


async def test_a_correctly_signed_click_is_accepted(http_slack):
    slack = http_slack
    request_id, card = await slack.posted()
    body = form(slack.fake.click_payload(card, user=ALICE, action_id="signoff_approve"))
    response = await slack.fake.post_events(body, slack.fake.signed_headers(body))
    assert response.status_code == 200

    async def approved() -> bool:
        return (await slack.get(request_id)).status is Status.APPROVED

    await wait_for(approved)


async def test_replayed_request_changes_nothing_more(http_slack):
    slack = http_slack
    request_id, card = await slack.posted("db.migrate")  # quorum 2: a replay must not count twice
    body = form(slack.fake.click_payload(card, user=ALICE, action_id="signoff_approve"))
    headers = slack.fake.signed_headers(body)
    first = await slack.fake.post_events(body, headers)
    second = await slack.fake.post_events(body, headers)
    assert (first.status_code, second.status_code) == (200, 200)

    async def both_answered() -> bool:
        return len(slack.fake.ephemerals_for(ALICE)) == 2

    await wait_for(both_answered)
    request = await slack.get(request_id)
    assert request.status is Status.PENDING
    assert [v.person for v in request.votes] == ["alice"]
    kinds = [e.kind for e in await slack.audit(request_id)]
    assert kinds.count("voted") == 1


def refused(slack: SlackWorld, code: str):
    async def check() -> bool:
        return bool(await slack.refusals(code))

    return check


async def test_value_of_another_request_is_refused_and_audited(slack):
    first_id, first_card = await slack.posted()
    second_id, _second_card = await slack.posted()
    await slack.fake.click(
        first_card, user=ALICE, action_id="signoff_approve", value=f"so1:{second_id}"
    )
    await wait_for(refused(slack, "wrong_message"))
    assert (await slack.get(first_id)).status is Status.PENDING
    assert (await slack.get(second_id)).status is Status.PENDING
    entry = (await slack.refusals("wrong_message"))[0]
    assert entry.request_id == second_id
    assert entry.actor == f"slack:{ALICE}"
    assert any("not counted" in e.text for e in slack.fake.ephemerals_for(ALICE))


async def test_click_from_a_message_we_did_not_post_is_refused_and_audited(slack):
    request_id, card = await slack.posted()
    # Same value, but on another message: a copy posted by someone else, another channel.
    await slack.fake.click(card, user=ALICE, action_id="signoff_approve", ts="1699999999.000001")
    await slack.fake.click(card, user=BOB, action_id="signoff_approve", channel="C0ELSEWHERE")

    async def both() -> bool:
        return len(await slack.refusals("wrong_message")) == 2

    await wait_for(both)
    assert (await slack.get(request_id)).status is Status.PENDING


@pytest.mark.parametrize(
    "value", ["hello", "so1:", "so1:../../etc/passwd", "so2:abc", "so1:" + "a" * 3000, ""]
)
async def test_malformed_values_are_refused_and_audited(slack, value):
    request_id, card = await slack.posted()
    await slack.fake.click(card, user=ALICE, action_id="signoff_approve", value=value)
    await wait_for(refused(slack, "malformed_click"))
    assert (await slack.get(request_id)).status is Status.PENDING
    assert slack.fake.ephemerals_for(ALICE)


async def test_click_from_another_workspace_is_refused_and_audited(slack):
    request_id, card = await slack.posted()
    await slack.fake.click(card, user=ALICE, action_id="signoff_approve", team="T0OTHER")
    await wait_for(refused(slack, "foreign_team"))
    assert (await slack.get(request_id)).status is Status.PENDING
    assert TEAM_ID != "T0OTHER"


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
