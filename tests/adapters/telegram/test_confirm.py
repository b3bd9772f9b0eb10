"""Confirming an approval in Telegram: a second button.

Approve on a card whose policy needs confirming counts nothing: it answers with a reply to
the card that mentions the person and shows the risk, the describe line and the params,
with "Confirm approve" (its reference carries the person's confirmation token) and
"Cancel". Only Confirm approve, pressed by that person, approves; the confirmation is then
edited to say so, without buttons. Long polling and the webhook, against the fake Bot API.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from adapters.telegram.callbacks import MAX_CALLBACK_DATA_BYTES
from approvals.machine import Status
from tests.adapters.telegram.conftest import ALICE, BOB, GROUP, TelegramHarness
from tests.fakes.telegram import FakeMessage

WIRE = {"amount": 1200, "iban": "DE89370400440532013000"}


async def confirmation_of(telegram: TelegramHarness, card: FakeMessage) -> FakeMessage:
    found = await telegram.fake.until(
        lambda: next(
            (
                message
                for message in telegram.fake.bot_messages(GROUP)
                if message.reply_to is not None
                and message.reply_to.message_id == card.message_id
                and message.buttons()
            ),
            None,
        )
    )
    return copy.deepcopy(found)


async def wire_card(telegram: TelegramHarness) -> tuple[str, FakeMessage]:
    request = await telegram.create("wire.pay", params=WIRE, title="Wire to the supplier")
    return request.id, await telegram.posted_card(request)


async def audited(telegram: TelegramHarness, request_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with telegram.runtime.store.read() as reader:
        entries = await reader.audit_entries(request_id=request_id)
    return [(entry.kind, json.loads(entry.data)) for entry in entries]


async def test_approve_shows_a_confirmation_and_confirm_approve_approves(telegram):
    request_id, card = await wire_card(telegram)

    toast = await telegram.click(ALICE, card, "Approve")

    assert "Confirm approve" in toast
    confirmation = await confirmation_of(telegram, card)
    assert "confirm your approval" in confirmation.text
    assert "🔴 Critical risk · Wire 1200 EUR to DE89370400440532013000" in confirmation.text
    assert 'iban: "DE89370400440532013000"' in confirmation.text
    assert [b["text"] for b in confirmation.buttons()] == ["✅ Confirm approve", "✖️ Cancel"]
    for button in confirmation.buttons():
        assert len(button["callback_data"].encode()) <= MAX_CALLBACK_DATA_BYTES
    pending = await telegram.service.get(request_id)
    assert (pending.status, pending.votes) == (Status.PENDING, ())

    toast = await telegram.click(ALICE, confirmation, "Confirm approve")

    assert toast == "Approved"
    decided = await telegram.service.get(request_id)
    assert (decided.status, decided.decision.by) == (Status.APPROVED, "alice")
    kind, data = (await audited(telegram, request_id))[-1]
    assert (kind, data["confirmed"]) == ("decided", True)
    closed = await telegram.fake.until(
        lambda: (m := telegram.fake.messages[(GROUP, confirmation.message_id)]).edits and m
    )
    assert closed.buttons() == []
    assert "confirmed and counted" in closed.text


async def test_someone_elses_confirm_approve_counts_nothing(telegram):
    request_id, card = await wire_card(telegram)
    await telegram.click(ALICE, card, "Approve")
    confirmation = await confirmation_of(telegram, card)

    toast = await telegram.click(BOB, confirmation, "Confirm approve")

    assert "not counted" in toast
    pending = await telegram.service.get(request_id)
    assert (pending.status, pending.votes) == (Status.PENDING, ())
    kind, data = (await audited(telegram, request_id))[-1]
    assert (kind, data["code"]) == ("refused", "unconfirmed_approval")


async def test_cancel_closes_the_confirmation_for_its_person_only(telegram):
    request_id, card = await wire_card(telegram)
    await telegram.click(ALICE, card, "Approve")
    confirmation = await confirmation_of(telegram, card)

    assert "someone else" in await telegram.click(BOB, confirmation, "Cancel")
    assert "Cancelled" in await telegram.click(ALICE, confirmation, "Cancel")

    closed = await telegram.fake.until(
        lambda: (m := telegram.fake.messages[(GROUP, confirmation.message_id)]).edits and m
    )
    assert closed.buttons() == []
    assert "cancelled" in closed.text
    pending = await telegram.service.get(request_id)
    assert (pending.status, pending.votes) == (Status.PENDING, ())
