"""B5 (who may decide) on every platform, and B4 in the web inbox, against the whole app.

The application runs with Slack, Telegram, Discord and the web inbox. From
``corpus/authorization.yaml``: a non-approver, an unknown account, the platform's bot
account and the requester on their own request are refused on every platform and audited;
one human clicking on three platforms and in the inbox counts once towards a quorum that
counts persons; agent API keys reach no decision route. From ``corpus/web_forms.yaml``:
forged inbox votes (CSRF, session, ids, oversized reason, edited params where the policy
forbids them or that are no JSON object, a stale payload hash) are refused and record nothing.
Every run ends with the invariant checker.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from approvals.machine import Status
from tests.fakes.discord import BOT_USER_ID as DISCORD_BOT
from tests.fakes.slack import BOT_USER_ID as SLACK_BOT
from tests.fakes.telegram import BOT_USER as TELEGRAM_BOT
from tests.reliability.app_world import (
    APPROVERS,
    OUTSIDER,
    STRANGER,
    Approver,
    AppWorld,
    app_world,
    fake_platforms,
)
from tests.reliability.corpus import cases
from tests.waiting import wait_for
from tests.web.conftest import csrf_token_in

BOT = Approver("bot", SLACK_BOT, int(TELEGRAM_BOT["id"]), DISCORD_BOT)
PEOPLE = {person.name: person for person in (*APPROVERS, OUTSIDER, STRANGER, BOT)}


@pytest.fixture
async def world(tmp_path) -> Any:
    async with (
        fake_platforms() as (slack, telegram, discord),
        app_world(tmp_path, slack=slack, telegram=telegram, discord=discord) as started,
    ):
        yield started


async def click_approve(world: AppWorld, who: Approver, request_id: str, platform: str) -> Any:
    """Press Approve as ``who`` on ``platform``; returns once the click was answered."""
    if platform == "slack":
        assert world.slack is not None
        slack_card = await world.slack_card(request_id)
        return await world.slack.click(slack_card, user=who.slack, action_id="signoff_approve")
    if platform == "telegram":
        assert world.telegram is not None
        fake = world.telegram
        telegram_card = await world.telegram_card(request_id)
        update = await fake.click(who.telegram, telegram_card, telegram_card.button_data("Approve"))
        return await fake.until(lambda: fake.answer_to(update), within=30)
    if platform == "discord":
        assert world.discord is not None
        discord_card = await world.discord_card(request_id)
        click = await world.discord.click(discord_card, user=who.discord, label="Approve")

        async def answered() -> bool:
            return click.answered

        return await wait_for(answered, within=30)
    client = await world.signed_in(who.name)
    page = await client.get(f"/requests/{request_id}")
    if page.status_code != 200:
        return page.status_code  # a non-approver does not even see the request
    response = await client.post(
        f"/requests/{request_id}/approve", data={"csrf_token": csrf_token_in(page.text)}
    )
    return response.status_code


async def refusal_codes(world: AppWorld, request_id: str) -> list[str]:
    async with world.store.read() as reader:
        entries = await reader.audit_entries(request_id=request_id)
    return [json.loads(e.data)["code"] for e in entries if e.kind == "refused"]


@pytest.mark.parametrize("entry", cases("authorization.yaml", "refusals"))
async def test_B5_refused_deciders_are_refused_on_every_platform_and_audited(world, entry):
    who = PEOPLE[entry["who"]]
    body: dict[str, Any] = {}
    if "requested_by" in entry:
        body["requested_by"] = entry["requested_by"]
    request_id = await world.created(**body)
    web_clicks = 0
    for platform in entry["platforms"]:
        answer = await click_approve(world, who, request_id, platform)
        if platform == "web":
            # The inbox shows a non-approver nothing to vote on; the requester is refused.
            assert answer in (200, 403, 404), answer
            web_clicks += answer != 404
    expected = len(entry["platforms"]) - (1 if "web" in entry["platforms"] else 0) + web_clicks

    async def all_audited() -> bool:
        return len(await refusal_codes(world, request_id)) >= expected

    await wait_for(all_audited, within=30)
    assert set(await refusal_codes(world, request_id)) == {entry["expect"]}
    request = await world.get(request_id)
    assert request.status is Status.PENDING
    assert request.votes == ()
    await world.check()


@pytest.mark.parametrize("entry", cases("authorization.yaml", "quorum"))
async def test_B5_one_human_on_every_platform_counts_once_towards_the_quorum(world, entry):
    who = PEOPLE[entry["who"]]
    request_id = await world.created(action="db.migrate", title="needs three people")
    for platform in entry["platforms"]:
        await click_approve(world, who, request_id, platform)

    async def refused_the_rest() -> bool:
        codes = await refusal_codes(world, request_id)
        return len(codes) >= len(entry["platforms"]) - 1

    await wait_for(refused_the_rest, within=30)
    assert set(await refusal_codes(world, request_id)) == {entry["expect"]["others"]}
    request = await world.get(request_id)
    assert request.status is Status.PENDING
    assert [vote.person for vote in request.votes] == [who.name]

    await click_approve(world, PEOPLE["p02"], request_id, "telegram")
    await click_approve(world, PEOPLE["p03"], request_id, "discord")

    async def approved() -> bool:
        return (await world.get(request_id)).status is Status.APPROVED

    await wait_for(approved, within=30)
    decided = await world.get(request_id)
    assert sorted(decided.approvals()) == entry["expect"]["quorum_by"]
    await world.check()


@pytest.mark.parametrize("entry", cases("authorization.yaml", "agent_keys"))
async def test_B5_an_agent_key_reaches_no_decision_route(world, entry):
    request_id = await world.created()
    response = await world.client.request(
        entry["method"],
        entry["path"].format(id=request_id),
        headers=world.auth(),
        json={},
    )
    assert response.status_code == entry["expect"], response.text[:200]
    assert response.status_code < 500
    request = await world.get(request_id)
    assert request.status is Status.PENDING
    assert request.votes == ()
    await world.check()


@pytest.mark.parametrize("entry", cases("web_forms.yaml", "forged"))
async def test_B4_forged_web_inbox_votes_are_refused_and_record_nothing(world, entry):
    request_id = await world.created()
    alice = await world.signed_in("p01")
    bob = await world.signed_in("p02")
    page = await alice.get(f"/requests/{request_id}")
    form = {"csrf_token": csrf_token_in(page.text)}
    csrf = entry.get("csrf")
    if csrf == "none":
        form = {"reason": ""}
    elif csrf == "wrong":
        form["csrf_token"] = "0" * 43
    elif csrf == "other_person":
        form["csrf_token"] = csrf_token_in((await bob.get(f"/requests/{request_id}")).text)
    if "reason" in entry:
        form["reason"] = entry["reason"] * int(entry.get("repeat_reason", 1))
    for field in ("params", "payload_sha256"):
        if field in entry:
            form[field] = entry[field]
    client = alice
    if entry.get("session") == "none":
        client = await world.signed_in("p03")
        client.cookies.clear()
    elif entry.get("session") == "forged":
        client = await world.signed_in("p03")
        for name in list(client.cookies.keys()):
            client.cookies.set(name, "forged-" + "x" * 40)
    target = entry.get("path_id", request_id)
    audit_before = await _audit(world)

    response = await client.post(f"/requests/{target}/{entry.get('verdict', 'deny')}", data=form)

    assert response.status_code == entry["expect"], response.text[:300]
    request = await world.get(request_id)
    assert request.status is Status.PENDING
    assert request.votes == ()
    # The outbox records its card deliveries meanwhile; what the vote left is the rest.
    recorded = [e for e in (await _audit(world))[len(audit_before) :] if e.kind != "delivered"]
    expected = [("refused", entry["audited"])] if "audited" in entry else []
    assert [(e.kind, json.loads(e.data).get("code")) for e in recorded] == expected
    await world.check()


async def _audit(world: AppWorld) -> list[Any]:
    async with world.store.read() as reader:
        return await reader.audit_entries()
