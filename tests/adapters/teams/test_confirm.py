"""Confirming an approval in Teams: Approve on a card whose policy needs confirming is
answered with a confirmation card for that person (risk, describe line, params) whose
Confirm approve carries their confirmation token; only that press, by that person,
approves. Cancel shows the card again. The real Teams SDK against the fake Bot Connector."""

from __future__ import annotations

import json
from typing import Any

from adapters.teams.cards import APPROVE, CANCEL, CONFIRM
from approvals.machine import Status
from tests.adapters.teams.conftest import ALICE, BOB, TeamsWorld
from tests.adapters.world import WIRE
from tests.fakes.teams import card_actions, card_text

CARD = "application/vnd.microsoft.card.adaptive"


async def audited(teams: TeamsWorld, request_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with teams.store.read() as reader:
        entries = await reader.audit_entries(request_id=request_id)
    return [(entry.kind, json.loads(entry.data)) for entry in entries]


async def press(teams: TeamsWorld, request_id: str, user: str, data: dict[str, Any]) -> Any:
    activity = teams.fake.invoke_activity(
        await teams.card(request_id), user_aad_id=user, verb=str(data["action"]), data=data
    )
    response = await teams.client.post(activity)
    assert response.status_code == 200, response.text
    return response.json()


async def confirmation(teams: TeamsWorld) -> tuple[str, dict[str, Any]]:
    request_id, card = await teams.posted("wire.pay", params=WIRE)
    answer = await teams.client.click(card, ALICE, APPROVE)
    assert answer["type"] == CARD
    return request_id, answer["value"]


async def test_approve_answers_with_a_confirmation_card_whose_confirm_approves(teams):
    request_id, shown = await confirmation(teams)

    text = card_text(shown)
    assert "🔴 Critical risk" in text
    assert "Wire 1200 EUR to DE89370400440532013000" in text
    assert 'iban: \n"DE89370400440532013000"' in text  # one line per text run
    titles = [action["title"] for action in card_actions(shown)]
    assert titles == ["Confirm approve", "Cancel"]
    pending = await teams.service.get(request_id)
    assert (pending.status, pending.votes) == (Status.PENDING, ())

    [confirm] = [a for a in card_actions(shown) if a["verb"] == CONFIRM]
    answer = await press(teams, request_id, ALICE, confirm["data"])

    assert answer["type"] == CARD  # the card as it now stands
    decided = await teams.service.get(request_id)
    assert (decided.status, decided.decision.by) == (Status.APPROVED, "alice")
    kind, data = (await audited(teams, request_id))[-1]
    assert (kind, data["confirmed"]) == ("decided", True)


async def test_someone_elses_confirm_approve_counts_nothing(teams):
    request_id, shown = await confirmation(teams)
    [confirm] = [a for a in card_actions(shown) if a["verb"] == CONFIRM]

    answer = await press(teams, request_id, BOB, confirm["data"])

    assert "not counted" in answer["value"]
    pending = await teams.service.get(request_id)
    assert (pending.status, pending.votes) == (Status.PENDING, ())
    kind, data = (await audited(teams, request_id))[-1]
    assert (kind, data["code"]) == ("refused", "unconfirmed_approval")


async def test_cancel_shows_the_card_again_and_records_nothing(teams):
    request_id, _shown = await confirmation(teams)

    answer = await press(teams, request_id, ALICE, {"action": CANCEL, "request": request_id})

    assert answer["type"] == CARD
    assert "Approve" in [action["title"] for action in card_actions(answer["value"])]
    pending = await teams.service.get(request_id)
    assert (pending.status, pending.votes) == (Status.PENDING, ())
