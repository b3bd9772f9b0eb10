"""B1, B3 and B4 at the Slack edge of the whole application (HTTP mode).

Each entry of ``corpus/slack_requests.yaml`` is posted to the app's own ``/slack/events``
the way Slack would post it, then tampered with: bad signatures and ``ssl_check`` smuggling
must get 401 before any handler runs (B1); the same signed request twice counts once (B3);
correctly signed but forged clicks are refused, told privately and audited (B4). Every run
ends with the invariant checker.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from approvals.machine import Status
from tests.fakes.slack import FakeSlack
from tests.reliability.app_world import APPROVERS, AppWorld, app_world, fake_platforms
from tests.reliability.corpus import cases
from tests.waiting import wait_for

ALICE = APPROVERS[0]
BOB = APPROVERS[1]


def form(payload: dict[str, Any], **extra: str) -> bytes:
    return urlencode({**extra, "payload": json.dumps(payload)}).encode()


def tampered(fake: FakeSlack, entry: dict[str, Any], body: bytes) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a click after ``entry``'s tampering."""
    tamper = entry["tamper"]
    headers = fake.signed_headers(body)
    if tamper == "unsigned":
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    elif tamper == "wrong_secret":
        headers = fake.signed_headers(body, secret="not-the-secret")
    elif tamper == "timestamp_offset":
        headers = fake.signed_headers(body, timestamp=int(time.time()) + entry["seconds"])
    elif tamper == "one_byte_changed":
        at = body.index(b"signoff_approve")
        body = body[:at] + b"S" + body[at + 1 :]
    elif tamper == "other_body":
        headers = fake.signed_headers(body + b"&x=1")
    elif tamper == "timestamp_text":
        headers["X-Slack-Request-Timestamp"] = entry["value"]
    elif tamper == "signature_text":
        headers["X-Slack-Signature"] = entry["value"]
    elif tamper == "signature_version":
        headers["X-Slack-Signature"] = headers["X-Slack-Signature"].replace(
            "v0=", entry["value"] + "="
        )
    elif tamper == "signature_upper":
        headers["X-Slack-Signature"] = "v0=" + headers["X-Slack-Signature"][3:].upper()
    elif tamper == "signature_truncated":
        headers["X-Slack-Signature"] = headers["X-Slack-Signature"][:-1]
    else:  # pragma: no cover - a corpus entry this test does not know
        raise AssertionError(f"unknown tampering {tamper!r}")
    return body, headers


async def nothing_happened(world: AppWorld, request_id: str, calls_before: int) -> None:
    """No handler ran: the request is untouched, nothing audited, no Web API call made."""
    assert world.slack is not None
    request = await world.get(request_id)
    assert request.status is Status.PENDING
    assert request.votes == ()
    assert len(world.slack.calls) == calls_before
    async with world.store.read() as reader:
        kinds = [e.kind for e in await reader.audit_entries(request_id=request_id)]
    assert "refused" not in kinds
    assert "voted" not in kinds


async def refusals(world: AppWorld, code: str) -> list[Any]:
    async with world.store.read() as reader:
        entries = await reader.audit_entries()
    return [e for e in entries if e.kind == "refused" and f'"{code}"' in e.data]


@pytest.fixture
async def world(tmp_path) -> Any:
    """The application with Slack in HTTP mode (signed posts to /slack/events)."""
    async with (
        fake_platforms(telegram=False, discord=False) as (slack, _telegram, _discord),
        app_world(tmp_path, slack=slack) as started,
    ):
        yield started


@pytest.fixture(params=["http", "socket"])
async def any_mode(request, tmp_path) -> Any:
    """The application with Slack in HTTP mode and in Socket Mode (clicks over the socket)."""
    async with (
        fake_platforms(telegram=False, discord=False) as (slack, _telegram, _discord),
        app_world(tmp_path, slack=slack, slack_mode=request.param) as started,
    ):
        yield started


@pytest.mark.parametrize("entry", cases("slack_requests.yaml", "signatures"))
async def test_B1_slack_signature_tampering_gets_401_and_runs_no_handler(world, entry):
    fake = world.slack
    request_id = await world.created()
    card = await world.slack_card(request_id)
    body = form(fake.click_payload(card, user=ALICE.slack, action_id="signoff_approve"))
    body, headers = tampered(fake, entry, body)
    calls_before = len(fake.calls)

    response = await fake.post_events(body, headers)

    assert response.status_code == entry["expect"]
    if entry["expect"] == 401:
        await nothing_happened(world, request_id, calls_before)
    else:
        await wait_for(lambda: _status_is(world, request_id, Status.APPROVED))
    await world.check()


@pytest.mark.parametrize("entry", cases("slack_requests.yaml", "smuggling"))
async def test_B1_slack_ssl_check_and_challenge_smuggling_gets_401(world, entry):
    fake = world.slack
    request_id = await world.created()
    card = await world.slack_card(request_id)
    payload = fake.click_payload(card, user=ALICE.slack, action_id="signoff_approve")
    if "replace" in entry:
        payload = dict(entry["replace"])
    if entry["encoding"] == "form":
        body = form(payload, **entry.get("extra", {}))
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    else:
        body = json.dumps({**entry.get("extra", {}), **payload}).encode()
        headers = {"Content-Type": "application/json"}
    calls_before = len(fake.calls)

    response = await fake.post_events(body, headers)

    assert response.status_code == entry["expect"]
    await nothing_happened(world, request_id, calls_before)
    await world.check()


@pytest.mark.parametrize("entry", cases("slack_requests.yaml", "replays"))
async def test_B3_the_same_signed_slack_request_twice_counts_once(world, entry):
    fake = world.slack
    request_id = await world.created(action="db.migrate")  # quorum 3: a replay must not count
    card = await world.slack_card(request_id)
    body = form(fake.click_payload(card, user=ALICE.slack, action_id=entry["action_id"]))
    headers = fake.signed_headers(body)

    first = await fake.post_events(body, headers)
    second = await fake.post_events(body, headers)

    assert (first.status_code, second.status_code) == (200, 200)
    await wait_for(lambda: _told(fake, ALICE.slack, 2))
    request = await world.get(request_id)
    assert request.status is Status.PENDING
    assert [vote.person for vote in request.votes] == [ALICE.name]
    async with world.store.read() as reader:
        kinds = [e.kind for e in await reader.audit_entries(request_id=request_id)]
    assert kinds.count("voted") == 1
    assert "already voted" in fake.ephemerals_for(ALICE.slack)[-1].text
    await world.check()


@pytest.mark.parametrize("entry", cases("slack_requests.yaml", "forged"))
async def test_B4_forged_slack_clicks_are_refused_told_and_audited(any_mode, entry):
    world = any_mode
    fake = world.slack
    request_id = await world.created(title="the card clicked")
    other_id = await world.created(title="another request")
    card = await world.slack_card(request_id)
    await world.slack_card(other_id)
    forge = entry["forge"]
    value = str(entry.get("value", "")) * int(entry.get("repeat_value", 1))
    forged: dict[str, Any] = {}
    if forge == "other_request":
        forged["value"] = f"so1:{other_id}"
    elif forge in ("value", "ts", "channel", "team"):
        forged[forge] = value

    ack = await fake.click(card, user=ALICE.slack, action_id="signoff_approve", **forged)

    assert ack.get("status", 200) == 200  # acknowledged at once, as Slack requires
    found = await wait_for(lambda: refusals(world, entry["expect"]))
    assert found[0].actor == f"slack:{ALICE.slack}"
    await wait_for(lambda: _told(fake, ALICE.slack, 1))
    assert "not counted" in fake.ephemerals_for(ALICE.slack)[0].text
    for untouched in (request_id, other_id):
        request = await world.get(untouched)
        assert request.status is Status.PENDING
        assert request.votes == ()
    await world.check()


async def _status_is(world: AppWorld, request_id: str, status: Status) -> bool:
    return (await world.get(request_id)).status is status


async def _told(fake: FakeSlack, user: str, count: int) -> bool:
    return len(fake.ephemerals_for(user)) >= count
