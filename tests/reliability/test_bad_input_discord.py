"""B2, B3 and B4 at the Discord edge of the whole application (clicks over the gateway).

From ``corpus/discord_interactions.yaml``: no HTTP endpoint takes Discord interactions, so
a forged one posted to the app finds nothing (B2); the same interaction dispatched twice
counts once (B3); forged button clicks (malformed ``custom_id``, another request's
reference, another message, channel or application) are refused privately and audited
(B4). Every run ends with the invariant checker.
"""

from __future__ import annotations

from typing import Any

import pytest

from approvals.machine import Status
from tests.fakes.discord import Interaction
from tests.reliability.app_world import APPROVERS, AppWorld, app_world, fake_platforms
from tests.reliability.corpus import cases
from tests.waiting import wait_for

ALICE, BOB = APPROVERS[0], APPROVERS[1]
DEFERRED_UPDATE = 6
"""The interaction response that acknowledges a click at once."""


@pytest.fixture
async def world(tmp_path) -> Any:
    async with (
        fake_platforms(slack=False, telegram=False) as (_slack, _telegram, discord),
        app_world(tmp_path, discord=discord) as started,
    ):
        yield started


def answered(interaction: Interaction) -> Any:
    async def check() -> bool:
        return interaction.answered

    return check


def told(world: AppWorld, user: str, words: str) -> Any:
    assert world.discord is not None
    fake = world.discord

    async def check() -> bool:
        return any(words in text for text in fake.ephemerals_for(user))

    return check


async def refused(world: AppWorld, code: str) -> list[Any]:
    async with world.store.read() as reader:
        entries = await reader.audit_entries()
    return [e for e in entries if e.kind == "refused" and f'"{code}"' in e.data]


@pytest.mark.parametrize("entry", cases("discord_interactions.yaml", "http_endpoints"))
async def test_B2_discord_interactions_posted_over_http_find_no_endpoint(world, entry):
    request_id = await world.created()
    card = await world.discord_card(request_id)
    forged = {
        "id": "800000000000000001",
        "type": 3,
        "token": "forged",
        "channel_id": card.channel_id,
        "message": {"id": card.id, "channel_id": card.channel_id},
        "member": {"user": {"id": ALICE.discord}},
        "data": {"custom_id": f"so1:a:{request_id}", "component_type": 2},
    }
    headers = {
        "Content-Type": "application/json",
        "X-Signature-Ed25519": "00" * 64,
        "X-Signature-Timestamp": "1700000000",
    }

    response = await world.client.post(entry["path"], json=forged, headers=headers)

    assert response.status_code == entry["expect"]
    assert response.json()["error"]["code"]
    request = await world.get(request_id)
    assert request.status is Status.PENDING
    assert request.votes == ()
    await world.check()


@pytest.mark.parametrize("entry", cases("discord_interactions.yaml", "replays"))
async def test_B3_the_same_discord_interaction_twice_counts_once(world, entry):
    fake = world.discord
    request_id = await world.created(action="db.migrate")  # quorum 3
    card = await world.discord_card(request_id)

    click = await fake.click(card, user=ALICE.discord, label="Approve")
    await wait_for(told(world, ALICE.discord, "Your approval was counted"))
    await fake.push(click)  # the very same interaction id, dispatched again
    later = await fake.click(card, user=BOB.discord, label="Approve")
    await wait_for(told(world, BOB.discord, "Your approval was counted"))

    request = await world.get(request_id)
    assert [vote.person for vote in request.votes] == [ALICE.name, BOB.name]
    assert click.response_types == [DEFERRED_UPDATE]
    assert later.response_types == [DEFERRED_UPDATE]
    # The copy was dropped before anything was sent for it.
    assert len([c for c in fake.calls_to("callback") if click.id in c.path]) == 1
    async with world.store.read() as reader:
        kinds = [e.kind for e in await reader.audit_entries(request_id=request_id)]
    assert kinds.count("voted") == 2
    await world.check()


@pytest.mark.parametrize("entry", cases("discord_interactions.yaml", "forged"))
async def test_B4_forged_discord_clicks_are_refused_told_and_audited(world, entry):
    fake = world.discord
    request_id = await world.created(title="the card clicked")
    other_id = await world.created(title="another request")
    card = await world.discord_card(request_id)
    await world.discord_card(other_id)
    forge = entry["forge"]
    value = str(entry.get("value", "")) * int(entry.get("repeat_value", 1))
    forged: dict[str, Any] = {}
    if forge == "custom_id":
        forged["custom_id"] = value
    elif forge == "custom_id_for_request":
        forged["custom_id"] = value + request_id
    elif forge == "other_request":
        forged["custom_id"] = f"so1:a:{other_id}"
    else:
        forged["label"] = "Approve"
        forged[forge] = value

    click = await fake.click(card, user=ALICE.discord, **forged)

    await wait_for(answered(click))
    found = await wait_for(lambda: refused(world, entry["expect"]))
    assert found[0].actor == f"discord:{ALICE.discord}"
    await wait_for(told(world, ALICE.discord, "Your click was not counted"))
    for untouched in (request_id, other_id):
        request = await world.get(untouched)
        assert request.status is Status.PENDING
        assert request.votes == ()
    await world.check()
