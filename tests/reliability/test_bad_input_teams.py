"""B1, B3 and B4 at the Microsoft Teams edge of the whole application.

Each entry of ``corpus/teams_activities.yaml`` is posted to the app's own ``/teams/messages``
the way the Bot Connector posts it (a JSON activity under a JWT the fake Teams signs), then
tampered with. A forged token gets 401 before any handler runs (B1); a body changed under a
good token is decided by the identity it names (B1, what the token does not cover); the same
activity twice counts once (B3); correctly signed but forged clicks are refused, told
privately in the invoke answer and audited (B4); a body that is not a JSON activity gets 400;
a huge reason is cut to the core's limit. Every run ends with the invariant checker.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from adapters.teams import MESSAGES_PATH
from adapters.teams.cards import APPROVE, DENY_WITH_REASON, REASON_LIMIT
from approvals.machine import Status
from approvals.model import MAX_REASON_LENGTH
from tests.fakes.teams import FakeTeams, Message
from tests.reliability.app_world import APPROVERS, STRANGER, AppWorld, app_world
from tests.reliability.corpus import cases
from tests.waiting import wait_for

ALICE, BOB = APPROVERS[0], APPROVERS[1]
CORPUS = "teams_activities.yaml"
NOTICE = "application/vnd.microsoft.activity.message"
"""The invoke answer Teams shows only to the person who clicked."""
CARD = "application/vnd.microsoft.card.adaptive"
"""The invoke answer that replaces the card for the person who clicked."""
BOT_WRITES = ("send", "reply", "edit", "delete", "create_conversation")
"""Bot Connector operations that change what people see."""


@pytest.fixture
async def world(tmp_path) -> AsyncIterator[AppWorld]:
    """The application with Microsoft Teams only (and the web inbox)."""
    with FakeTeams() as teams:
        async with app_world(tmp_path, teams=teams) as started:
            yield started


def fake_of(world: AppWorld) -> FakeTeams:
    assert world.teams is not None
    return world.teams


def click(
    fake: FakeTeams,
    card: Message,
    aad_object_id: str,
    *,
    action: str = APPROVE,
    data: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """An invoke for a press of ``action`` on ``card``, naming the card's own request unless
    ``data`` says otherwise."""
    if data is None:
        data = {"action": action, "request": _request_of(card)}
    return fake.invoke_activity(card, user_aad_id=aad_object_id, verb=action, data=data, **options)


def _request_of(card: Message) -> str:
    for action in FakeTeams.card_actions(card):
        data = action.get("data") or {}
        if data.get("action") == APPROVE:
            return str(data["request"])
    raise AssertionError("no Approve button on the card")


async def post(
    world: AppWorld, activity: dict[str, Any] | bytes, headers: dict[str, str]
) -> httpx.Response:
    """POST to the app's Teams route as the Bot Connector does."""
    content = activity if isinstance(activity, bytes) else json.dumps(activity).encode()
    return await world.client.post(MESSAGES_PATH, content=content, headers=headers)


# -- token forgery --------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64_json(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _signed_by_known_key(fake: FakeTeams, claims: dict[str, Any]) -> str:
    return jwt.encode(
        claims,
        fake.known_key.private_key,
        algorithm="RS256",
        headers={"kid": fake.known_key.kid, "typ": "JWT"},
    )


def _unsigned(fake: FakeTeams, claims: dict[str, Any], alg: str) -> str:
    """The header and claims of a token naming ``alg`` and the known key id; no signature."""
    header = {"alg": alg, "kid": fake.known_key.kid, "typ": "JWT"}
    return f"{_b64_json(header)}.{_b64_json(claims)}"


def _hs256_with_public_key(fake: FakeTeams, claims: dict[str, Any]) -> str:
    """The classic algorithm confusion: HMAC-SHA256 keyed with the published RSA public key."""
    public_pem = fake.known_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = _unsigned(fake, claims, "HS256")
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def tampered(
    fake: FakeTeams, entry: dict[str, Any], activity: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The activity and headers of a click after ``entry``'s tampering with its token."""
    sign = dict(entry.get("sign", {}))
    if sign.get("service_url") == "another":
        sign["service_url"] = fake.service_url_for("another")
    headers = fake.headers_for(activity, **sign)
    token = headers["Authorization"].removeprefix("Bearer ")
    forge = entry.get("forge")
    if forge is None:
        return activity, headers
    if forge == "no_header":
        del headers["Authorization"]
        return activity, headers
    if forge == "authorization":
        headers["Authorization"] = entry["value"]
        return activity, headers
    if forge == "scheme":
        headers["Authorization"] = entry["value"] + token
        return activity, headers
    if forge == "body_service_url":
        return {**activity, "serviceUrl": fake.service_url_for(entry["value"])}, headers
    if forge == "claims":
        claims = {k: v for k, v in _claims(token).items() if k not in entry["drop"]}
        token = _signed_by_known_key(fake, claims)
    elif forge == "entra_issuer":
        tenant = entry["tenant"]
        token = fake.sign_inbound(
            activity["serviceUrl"],
            iss=f"{fake.login_endpoint}/{tenant}/v2.0",
            extra_claims={"tid": tenant},
        )
    elif forge == "alg_none":
        token = _unsigned(fake, _claims(token), "none") + "."
    elif forge == "alg_confusion":
        token = _hs256_with_public_key(fake, _claims(token))
    elif forge == "signature":
        head, body, _signature = token.split(".")
        signature = ""
        if entry["value"] == "other_token":
            other = fake.sign_inbound(activity["serviceUrl"], aud="another-app")
            signature = other.split(".")[2]
        token = f"{head}.{body}.{signature}"
    else:  # pragma: no cover - a corpus entry this test does not know
        raise AssertionError(f"unknown forgery {forge!r}")
    headers["Authorization"] = f"Bearer {token}"
    return activity, headers


# -- what happened --------------------------------------------------------------------------


def bot_writes(fake: FakeTeams) -> int:
    return sum(1 for call in fake.calls if call.operation in BOT_WRITES)


async def nothing_happened(world: AppWorld, request_id: str, card: Message, writes: int) -> None:
    """No handler ran: the request is untouched, nothing audited, no card sent or edited."""
    fake = fake_of(world)
    request = await world.get(request_id)
    assert request.status is Status.PENDING
    assert request.votes == ()
    async with world.store.read() as reader:
        kinds = [e.kind for e in await reader.audit_entries(request_id=request_id)]
        every_kind = [e.kind for e in await reader.audit_entries()]
    assert "refused" not in kinds
    assert "voted" not in kinds
    assert "refused" not in every_kind  # a malformed click is audited without a request id
    assert bot_writes(fake) == writes
    assert fake.message(card.conversation_id, card.activity_id).edits == 0


async def refusals(world: AppWorld, code: str) -> list[Any]:
    async with world.store.read() as reader:
        entries = await reader.audit_entries()
    return [e for e in entries if e.kind == "refused" and f'"{code}"' in e.data]


def status_is(world: AppWorld, request_id: str, status: Status) -> Any:
    async def check() -> bool:
        return (await world.get(request_id)).status is status

    return check


def card_shows(fake: FakeTeams, card: Message, words: str) -> Any:
    async def check() -> bool:
        return words in fake.card_text(fake.message(card.conversation_id, card.activity_id))

    return check


# -- B1 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", cases(CORPUS, "tokens"))
async def test_B1_teams_token_forgeries_get_401_and_run_no_handler(world, entry):
    fake = fake_of(world)
    request_id = await world.created()
    card = await world.teams_card(request_id)
    activity, headers = tampered(fake, entry, click(fake, card, ALICE.teams))
    writes = bot_writes(fake)

    response = await post(world, activity, headers)

    assert response.status_code == entry["expect"], response.text
    if entry["expect"] == 401:
        assert response.json() == {"error": "Unauthorized"}
        await nothing_happened(world, request_id, card, writes)
        await world.check()
        # Still nothing once the outbox is idle: no edit was on its way either.
        await nothing_happened(world, request_id, card, writes)
    else:
        answer = response.json()
        assert answer["type"] == CARD  # the card as it now stands, decided
        await wait_for(status_is(world, request_id, Status.APPROVED))
        await wait_for(card_shows(fake, card, "Approved"))
        await world.check()


@pytest.mark.parametrize("entry", cases(CORPUS, "tampered_bodies"))
async def test_B1_a_body_changed_under_a_good_token_is_decided_by_the_identity_it_names(
    world, entry
):
    fake = fake_of(world)
    request_id = await world.created()
    card = await world.teams_card(request_id)
    activity = click(fake, card, ALICE.teams)
    headers = fake.headers_for(activity)  # signed for Alice's click...
    named = STRANGER if entry["who"] == "stranger" else BOB
    activity["from"] = {**activity["from"], "aadObjectId": named.teams}  # ...then changed

    response = await post(world, activity, headers)

    assert response.status_code == 200, response.text  # the token check cannot tell
    answer = response.json()
    request = await world.get(request_id)
    if entry["expect"] == "unknown_identity":
        assert answer["type"] == NOTICE
        assert "not counted" in answer["value"]
        found = await refusals(world, "unknown_identity")
        assert [e.actor for e in found] == [f"teams:{named.teams}"]
        assert request.status is Status.PENDING
        assert request.votes == ()
    else:
        assert entry["expect"] == "counted_as_named_person"
        assert answer["type"] == CARD
        assert [vote.person for vote in request.votes] == [named.name]
        assert request.status is Status.APPROVED
        await wait_for(card_shows(fake, card, "Approved"))
    await world.check()


# -- B3 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", cases(CORPUS, "replays"))
async def test_B3_the_same_teams_activity_twice_counts_once(world, entry):
    fake = fake_of(world)
    request_id = await world.created(action="db.migrate")  # quorum 3: a replay must not count
    card = await world.teams_card(request_id)
    activity = click(fake, card, ALICE.teams)
    headers = fake.headers_for(activity)

    if entry["mode"] == "concurrent":
        first, second = await asyncio.gather(
            post(world, activity, headers), post(world, activity, headers)
        )
    else:
        first = await post(world, activity, headers)
        again = fake.headers_for(activity) if entry["mode"] == "resigned" else headers
        second = await post(world, activity, again)

    assert (first.status_code, second.status_code) == (200, 200)
    answers = [first.json(), second.json()]
    assert any("Your approval was counted" in answer["value"] for answer in answers)
    if entry["mode"] != "concurrent":
        assert answers[1] == answers[0]  # the copy gets the first answer
    bobs = click(fake, card, BOB.teams)
    later = await post(world, bobs, fake.headers_for(bobs))
    assert "Your approval was counted" in later.json()["value"]
    request = await world.get(request_id)
    assert request.status is Status.PENDING
    assert [vote.person for vote in request.votes] == [ALICE.name, BOB.name]
    async with world.store.read() as reader:
        kinds = [e.kind for e in await reader.audit_entries(request_id=request_id)]
    assert kinds.count("voted") == 2
    await world.check()


# -- B4 -------------------------------------------------------------------------------------


def forged_click(
    fake: FakeTeams,
    entry: dict[str, Any],
    card: Message,
    other_card: Message,
    other_id: str,
) -> tuple[dict[str, Any], str]:
    """The forged invoke of ``entry`` on ``card`` and the Entra object id it comes from."""
    request_id = _request_of(card)
    forge = entry["forge"]
    value: Any = entry.get("value")
    if isinstance(value, str):
        value *= int(entry.get("repeat_value", 1))
    user = ALICE.teams
    data: Any = {"action": APPROVE, "request": request_id}
    target = card
    options: dict[str, Any] = {}
    if forge == "user":
        user = STRANGER.teams
    elif forge == "tenant":
        options["tenant_id"] = value
    elif forge == "data":
        data = dict(value)
    elif forge == "request":
        data["request"] = value
    elif forge == "request_suffix":
        data["request"] = request_id + str(value)
    elif forge == "action":
        data["action"] = value
    elif forge == "data_for_request":
        data = {**value, "request": request_id}
    elif forge == "other_request":
        data["request"] = other_id
    elif forge == "other_card":
        target = other_card
    elif forge == "conversation":
        options["conversation_id"] = f"{value};messageid={card.activity_id}"
    elif forge != "reply_to":  # pragma: no cover - a corpus entry this test does not know
        raise AssertionError(f"unknown forgery {forge!r}")
    if forge == "conversation":
        activity = fake.invoke_activity(
            card.activity_id, user_aad_id=user, verb=APPROVE, data=data, **options
        )
    else:
        activity = fake.invoke_activity(
            target, user_aad_id=user, verb=APPROVE, data=data, **options
        )
    if forge == "reply_to":
        activity["channelData"]["legacy"] = {"replyToId": value}
        if value is None:
            del activity["replyToId"]
        else:
            activity["replyToId"] = value
    return activity, user


@pytest.mark.parametrize("entry", cases(CORPUS, "forged"))
async def test_B4_forged_teams_clicks_are_refused_told_and_audited(world, entry):
    fake = fake_of(world)
    request_id = await world.created(title="the card clicked")
    other_id = await world.created(title="another request")
    card = await world.teams_card(request_id)
    other_card = await world.teams_card(other_id)
    activity, user = forged_click(fake, entry, card, other_card, other_id)
    writes = bot_writes(fake)

    response = await post(world, activity, fake.headers_for(activity))

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == NOTICE  # told privately, in the invoke answer
    assert "Your click was not counted" in answer["value"]
    found = await refusals(world, entry["expect"])
    assert [e.actor for e in found] == [f"teams:{user}"]
    for untouched in (request_id, other_id):
        request = await world.get(untouched)
        assert request.status is Status.PENDING
        assert request.votes == ()
    await world.check()
    assert bot_writes(fake) == writes
    assert fake.message(card.conversation_id, card.activity_id).edits == 0


# -- bodies and reasons ---------------------------------------------------------------------


@pytest.mark.parametrize("entry", cases(CORPUS, "unreadable_invokes"))
async def test_a_signed_invoke_the_sdk_cannot_read_runs_no_handler(world, entry):
    fake = fake_of(world)
    request_id = await world.created()
    card = await world.teams_card(request_id)
    activity = click(fake, card, ALICE.teams)
    activity["value"]["action"]["data"] = entry["data"]
    writes = bot_writes(fake)

    response = await post(world, activity, fake.headers_for(activity))

    assert response.status_code == entry["expect"], response.text
    assert response.json()["error"] == "bad_request"
    await nothing_happened(world, request_id, card, writes)
    await world.check()
    await nothing_happened(world, request_id, card, writes)


@pytest.mark.parametrize("entry", cases(CORPUS, "bodies"))
async def test_a_teams_body_that_is_not_a_json_activity_gets_400_and_runs_nothing(world, entry):
    fake = fake_of(world)
    request_id = await world.created()
    card = await world.teams_card(request_id)
    headers = fake.headers_for(click(fake, card, ALICE.teams))  # a good token
    writes = bot_writes(fake)

    response = await post(world, entry["body"].encode(), headers)

    assert response.status_code == entry["expect"], response.text
    assert response.json()["error"] == "bad_request"
    await nothing_happened(world, request_id, card, writes)
    await world.check()
    await nothing_happened(world, request_id, card, writes)


@pytest.mark.parametrize("entry", cases(CORPUS, "reasons"))
async def test_a_huge_teams_deny_reason_is_cut_to_the_core_limit(world, entry):
    fake = fake_of(world)
    request_id = await world.created()
    card = await world.teams_card(request_id)
    data = {"action": DENY_WITH_REASON, "request": request_id, "reason": entry["text"]}
    activity = click(fake, card, ALICE.teams, action=DENY_WITH_REASON, data=data)

    response = await post(world, activity, fake.headers_for(activity))

    assert response.status_code == 200, response.text
    assert response.json()["type"] == CARD  # decided
    request = await world.get(request_id)
    assert request.status is Status.DENIED
    [vote] = request.votes
    assert REASON_LIMIT == MAX_REASON_LENGTH
    # Cut to the limit, then trimmed again by the core (the cut may end on a space).
    assert vote.reason == entry["text"].strip()[:MAX_REASON_LENGTH].strip()
    assert vote.reason
    assert len(vote.reason) <= MAX_REASON_LENGTH
    await wait_for(card_shows(fake, card, "Denied"))
    await world.check()
