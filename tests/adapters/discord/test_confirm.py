"""Confirming an approval in Discord: Approve on a card whose policy needs confirming is
answered with a modal showing the risk, the describe line and the params; its custom_id
carries the person's confirmation token, and only its submission, by that person, approves.
The real discord.py against the fake Discord."""

from __future__ import annotations

import json
from typing import Any

from approvals.machine import Status
from tests.adapters.discord.conftest import ALICE, CAROL, answered
from tests.adapters.world import WIRE
from tests.waiting import wait_for


async def audited(world: Any, request_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with world.store.read() as reader:
        entries = await reader.audit_entries(request_id=request_id)
    return [(entry.kind, json.loads(entry.data)) for entry in entries]


async def opened(world: Any) -> tuple[str, Any]:
    request_id, card = await world.posted("wire.pay", params=WIRE)
    click = await world.fake.click(card, user=ALICE, label="Approve")
    await wait_for(answered(click))
    return request_id, click


async def test_approve_opens_the_confirmation_modal_and_its_submission_approves(discord_world):
    world = discord_world
    request_id, click = await opened(world)

    assert click.response_types == [9]  # the modal is the answer
    modal = click.modal
    assert modal["title"] == "Confirm approval"
    assert modal["custom_id"].startswith(f"so1:c:{request_id}:")
    assert len(modal["custom_id"]) <= 100
    [display] = modal["components"]
    text = display["content"]
    assert "🔴 Critical risk · Wire 1200 EUR to DE89370400440532013000" in text
    assert 'iban: "DE89370400440532013000"' in text
    pending = await world.get(request_id)
    assert (pending.status, pending.votes) == (Status.PENDING, ())

    await wait_for(answered(await world.fake.submit_modal(click, reason="")))

    await wait_for(world.status_is(request_id, Status.APPROVED))
    kind, data = (await audited(world, request_id))[-1]
    assert (kind, data["confirmed"]) == ("decided", True)


async def test_a_confirmation_modal_submitted_by_someone_else_counts_nothing(discord_world):
    world = discord_world
    request_id, click = await opened(world)

    await world.fake.submit_modal(click, reason="", user=CAROL)

    await wait_for(world.told(CAROL, "not counted"))
    pending = await world.get(request_id)
    assert (pending.status, pending.votes) == (Status.PENDING, ())
    kind, data = (await audited(world, request_id))[-1]
    assert (kind, data["code"]) == ("refused", "unconfirmed_approval")
