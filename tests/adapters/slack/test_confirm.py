"""Confirming an approval in Slack: Approve on a card whose policy needs confirming opens a
modal showing the risk, the describe line and the params; only its submission, as the
person it was opened for, approves. HTTP mode and Socket Mode, against the fake Slack."""

from __future__ import annotations

import json
from typing import Any

from approvals.machine import Status
from tests.adapters.slack.conftest import ALICE, BOB, SlackWorld
from tests.adapters.slack.test_contract import modal_text
from tests.adapters.world import WIRE
from tests.waiting import wait_for


def modal_opened(slack: SlackWorld, count: int = 1):
    async def check() -> bool:
        return len(slack.fake.views) >= count

    return check


def status_is(slack: SlackWorld, request_id: str, status: Status):
    async def check() -> bool:
        return (await slack.get(request_id)).status is status

    return check


def told(slack: SlackWorld, user: str, words: str):
    async def check() -> bool:
        return any(words in e.text for e in slack.fake.ephemerals_for(user))

    return check


async def audited(slack: SlackWorld, request_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with slack.store.read() as reader:
        entries = await reader.audit_entries(request_id=request_id)
    return [(entry.kind, json.loads(entry.data)) for entry in entries]


async def opened_confirmation(slack: SlackWorld, user: str = ALICE) -> tuple[str, dict[str, Any]]:
    request_id, card = await slack.posted("wire.pay", params=WIRE)
    await slack.fake.click(card, user=user, action_id="signoff_approve")
    await wait_for(modal_opened(slack))
    return request_id, slack.fake.views[0]


async def test_approve_opens_the_confirmation_modal_and_its_submission_approves(slack):
    request_id, view = await opened_confirmation(slack)

    assert view["callback_id"] == "signoff_confirm_approve"
    assert view["submit"]["text"] == "Confirm approve"
    text = modal_text(view)
    assert "🔴 Critical risk · Wire 1200 EUR to DE89370400440532013000" in text
    assert 'iban: "DE89370400440532013000"' in text
    assert "amount: 1200" in text
    request = await slack.get(request_id)
    assert (request.status, request.votes) == (Status.PENDING, ())

    await slack.fake.submit_view(view, user=ALICE, reason=None)

    await wait_for(status_is(slack, request_id, Status.APPROVED))
    kind, data = (await audited(slack, request_id))[-1]
    assert (kind, data["confirmed"]) == ("decided", True)
    await slack.deliver()
    card = await slack.card(request_id)
    assert card.buttons == []
    assert "Approved by alice" in card.all_text


async def test_a_confirmation_modal_submitted_by_someone_else_counts_nothing(slack):
    request_id, view = await opened_confirmation(slack)

    await slack.fake.submit_view(view, user=BOB, reason=None)

    await wait_for(told(slack, BOB, "not counted"))
    request = await slack.get(request_id)
    assert (request.status, request.votes) == (Status.PENDING, ())
    kind, data = (await audited(slack, request_id))[-1]
    assert (kind, data["code"]) == ("refused", "unconfirmed_approval")


async def test_a_plain_approve_still_decides_at_once_without_a_modal(slack):
    request_id, card = await slack.posted()

    await slack.fake.click(card, user=ALICE, action_id="signoff_approve")

    await wait_for(status_is(slack, request_id, Status.APPROVED))
    assert slack.fake.views == []
