"""Approving and denying in Telegram, end to end: the real python-telegram-bot against the fake
Bot API, in polling and webhook mode, with the approval service and the outbox."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute

from adapters.telegram import TelegramAdapter, TelegramConfigError, build_telegram_adapter
from adapters.telegram.rendering import ASK_REASON, WORKING
from approvals.clock import ManualClock
from approvals.machine import Status
from approvals.model import Verdict, VoteCommand
from approvals.outcomes import Applied, NotAllowed, RefusalCode
from config.schema import TelegramSettings
from tests.adapters.telegram.conftest import (
    ALICE,
    BOB,
    ERIN,
    GROUP,
    MIN,
    SLACK_ALICE,
    SLACK_DAVE,
    STRANGER,
    TelegramHarness,
)
from tests.fakes.telegram import TOKEN
from tests.waiting import wait_for


async def audit(
    telegram: TelegramHarness, request_id: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    async with telegram.store.read() as reader:
        entries = await reader.audit_entries(request_id=request_id)
    return [(entry.kind, json.loads(entry.data)) for entry in entries]


async def refusals(
    telegram: TelegramHarness, count: int, request_id: str | None = None
) -> list[str]:
    """The codes of refused clicks, once ``count`` are audited (the toast may come first)."""

    async def audited() -> list[str]:
        entries = await audit(telegram, request_id)
        codes = [data["code"] for kind, data in entries if kind == "refused"]
        return codes if len(codes) >= count else []

    return await wait_for(audited)


async def test_approve_in_telegram_edits_the_card_and_removes_the_buttons(
    telegram: TelegramHarness,
):
    request = await telegram.create()
    card = await telegram.posted_card(request)
    assert [b["text"] for b in card.buttons()] == ["✅ Approve", "⛔ Deny", "💬 Deny with reason"]
    assert all(len(b["callback_data"].encode()) <= 64 for b in card.buttons())

    assert await telegram.click(ALICE, card, "Approve") == "Approved"

    decided = await telegram.service.get(request.id)
    assert decided is not None
    assert decided.status is Status.APPROVED
    assert decided.votes[0].platform == "telegram"
    assert decided.votes[0].identity == str(ALICE)
    await telegram.deliver()
    edited = telegram.fake.card_for(request.id, GROUP)
    assert edited is not None
    assert edited.message_id == card.message_id
    assert edited.buttons() == []
    assert "Approved by alice" in edited.text


async def test_deny_with_a_reason_asks_with_force_reply_and_takes_the_reply(
    telegram: TelegramHarness,
):
    request = await telegram.create("secrets.rotate", title="Rotate the root key")
    card = await telegram.posted_card(request)
    # The policy needs a reason, so there is no plain Deny button.
    assert [b["text"] for b in card.buttons()] == ["✅ Approve", "⛔ Deny with reason"]

    assert await telegram.click(BOB, card, "Deny with reason") == ASK_REASON
    prompt = await telegram.fake.until(
        lambda: next(
            (
                m
                for m in telegram.fake.bot_messages(GROUP)
                if m.reply_to is not None and m.reply_to.message_id == card.message_id
            ),
            None,
        )
    )
    assert prompt.reply_markup["force_reply"] is True
    assert prompt.reply_markup["selective"] is True
    [mention] = [e for e in prompt.entities if e["type"] == "text_mention"]
    assert (mention["offset"], mention["length"], mention["user"]["id"]) == (0, 3, BOB)

    # Someone else's reply to Bob's prompt is not Bob's reason.
    await telegram.fake.reply(ALICE, prompt, "I say no too")
    await telegram.fake.reply(BOB, prompt, "Not during the <b>freeze</b> @everyone")
    answer = await telegram.fake.until(
        lambda: next((m for m in telegram.fake.bot_messages(GROUP) if m.text == "Denied"), None)
    )
    assert answer.reply_to.sender["id"] == BOB

    decided = await telegram.service.get(request.id)
    assert decided is not None
    assert decided.status is Status.DENIED
    assert decided.decision is not None
    assert decided.decision.by == "bob"
    assert decided.decision.reason == "Not during the <b>freeze</b> @everyone"
    await telegram.deliver()
    edited = telegram.fake.card_for(request.id, GROUP)
    assert edited is not None
    assert edited.buttons() == []
    assert "Denied by bob" in edited.text
    assert "Not during the <b>freeze</b> @everyone" in edited.text
    assert not [e for e in edited.entities if e["type"] == "mention"]


async def test_quorum_across_telegram_and_slack_counts_persons_not_accounts(
    telegram: TelegramHarness,
):
    request = await telegram.create("db.migrate", title="Migrate orders")
    card = await telegram.posted_card(request)
    assert telegram.slack.kinds() == [("send", "slack:channel:C0OPS")]

    counted = await telegram.click(ALICE, card, "Approve")
    assert counted.startswith("Your approval was counted.")
    assert "1 of 2" in counted
    # Alice again, through her Slack account: still one person.
    again = await telegram.service.vote(
        VoteCommand(request.id, "slack", SLACK_ALICE, Verdict.APPROVE)
    )
    assert isinstance(again, NotAllowed)
    assert again.code is RefusalCode.ALREADY_VOTED
    pending = await telegram.service.get(request.id)
    assert pending is not None
    assert pending.status is Status.PENDING
    await telegram.deliver()
    counted_card = telegram.fake.card_for(request.id, GROUP)
    assert counted_card is not None
    assert "1 of 2" in counted_card.text

    done = await telegram.service.vote(
        VoteCommand(request.id, "slack", SLACK_DAVE, Verdict.APPROVE)
    )
    assert isinstance(done, Applied)
    assert done.request.status is Status.APPROVED
    assert done.request.approvals() == {"alice", "dave"}
    await telegram.deliver()
    edited = telegram.fake.card_for(request.id, GROUP)
    assert edited is not None
    assert edited.buttons() == []
    assert "Approved by alice, dave" in edited.text
    assert await telegram.click(BOB, card, "Approve") == (
        "Nothing changed: this request is already approved by dave at "
        f"{done.request.decided_at:%Y-%m-%d %H:%M} UTC."
    )


async def test_non_approver_requester_and_stranger_are_refused_with_a_toast(
    telegram: TelegramHarness,
):
    request = await telegram.create(requested_by="bob")
    card = await telegram.posted_card(request)

    not_an_approver = (
        "Your click was not counted: erin is not an approver for this request at its current level."
    )
    assert await telegram.click(ERIN, card, "Approve") == not_an_approver
    assert await telegram.click(BOB, card, "Approve") == (
        "Your click was not counted: this request was made on your behalf, "
        "so someone else must decide it."
    )
    assert await telegram.click(STRANGER, card, "Deny") == (
        "Your click was not counted: your telegram account is not linked to anyone signoff knows."
    )
    assert await telegram.click(ERIN, card, "Deny with reason") == not_an_approver

    pending = await telegram.service.get(request.id)
    assert pending is not None
    assert pending.status is Status.PENDING
    refused = await refusals(telegram, 4, request.id)
    assert refused == ["not_an_approver", "requester", "unknown_identity", "not_an_approver"]
    await telegram.deliver()
    still_open = telegram.fake.card_for(request.id, GROUP)
    assert still_open is not None
    assert still_open.buttons() != []


async def test_concurrent_clicks_make_exactly_one_decision(telegram: TelegramHarness):
    request = await telegram.create()
    card = await telegram.posted_card(request)
    approve, deny = card.button_data("Approve"), card.button_data("⛔ Deny")
    clicks = [(ALICE, approve), (BOB, deny)] * 5
    updates = [telegram.fake.callback_update(user, card, data) for user, data in clicks]

    await asyncio.gather(*(telegram.fake.deliver(update) for update in updates))
    toasts = [await telegram.toast(update) for update in updates]

    decided = await telegram.service.get(request.id)
    assert decided is not None
    assert decided.status in (Status.APPROVED, Status.DENIED)
    winner = "Approved" if decided.status is Status.APPROVED else "Denied"
    told = ("Nothing changed: this request is already", "Your click was not counted: ")
    # A click that waits for its turn longer than the ack budget is answered "received" at
    # once; its outcome follows as a reply to the card (or as the card's edit, for the
    # click that decided).
    assert toasts.count(winner) <= 1
    assert all(t in (winner, WORKING) or t.startswith(told) for t in toasts)
    late = toasts.count(WORKING) - (1 - toasts.count(winner))

    def late_replies() -> list[str]:
        return [
            m.text
            for m in telegram.fake.bot_messages(card.chat_id)
            if m.reply_to is not None and m.reply_to.message_id == card.message_id
        ]

    await telegram.fake.until(lambda: len(late_replies()) == late)
    assert all(any(words in text for words in told) for text in late_replies())
    kinds = [kind for kind, _data in await audit(telegram, request.id)]
    assert kinds.count("decided") == 1


async def test_a_decision_made_in_slack_edits_the_telegram_card(telegram: TelegramHarness):
    request = await telegram.create()
    card = await telegram.posted_card(request)

    outcome = await telegram.service.vote(
        VoteCommand(request.id, "slack", SLACK_ALICE, Verdict.DENY, reason="wrong window")
    )
    assert isinstance(outcome, Applied)
    await telegram.deliver()

    edited = telegram.fake.card_for(request.id, GROUP)
    assert edited is not None
    assert edited.message_id == card.message_id
    assert edited.buttons() == []
    assert "Denied by alice" in edited.text
    assert "wrong window" in edited.text


async def test_timeout_edits_the_card_and_late_clicks_are_told(
    telegram: TelegramHarness, clock: ManualClock
):
    request = await telegram.create()
    card = await telegram.posted_card(request)

    clock.advance(31 * MIN)
    assert await telegram.service.process_due() == 1
    await telegram.deliver()

    edited = telegram.fake.card_for(request.id, GROUP)
    assert edited is not None
    assert edited.buttons() == []
    assert "Denied: nobody decided before the deadline" in edited.text
    toast = await telegram.click(ALICE, card, "Approve")
    assert toast.startswith("Nothing changed: this request is already denied by timeout")


async def test_restart_with_a_pending_request_and_a_click_on_the_old_card_works(
    telegram: TelegramHarness,
):
    request = await telegram.create()
    card = await telegram.posted_card(request)

    await telegram.restart()

    assert await telegram.click(BOB, card, "Approve") == "Approved"
    approved = await telegram.service.get(request.id)
    assert approved is not None
    assert approved.status is Status.APPROVED


async def test_cards_go_privately_to_approvers_who_started_the_bot(telegram: TelegramHarness):
    request = await telegram.create("dm.ask", title="Open the vault")
    await telegram.deliver()

    card = telegram.fake.card_for(request.id, ALICE)
    assert card is not None
    assert card.chat["type"] == "private"
    # Erin never opened a chat with the bot: Telegram refuses, the row is dead-lettered.
    assert telegram.fake.card_for(request.id, ERIN) is None
    failures = [
        data for kind, data in await audit(telegram, request.id) if kind == "delivery_failed"
    ]
    assert [f["destination"] for f in failures] == [f"telegram:user:{ERIN}"]

    assert await telegram.click(ALICE, card, "Approve") == "Approved"


async def test_5xx_is_retried_and_429_retry_after_is_honoured(
    telegram: TelegramHarness, clock: ManualClock
):
    telegram.fake.fail("sendMessage", 502)
    request = await telegram.create()
    await telegram.deliver()
    assert telegram.fake.card_for(request.id, GROUP) is None

    clock.advance(timedelta(seconds=5))
    await telegram.deliver()
    card = telegram.fake.card_for(request.id, GROUP)
    assert card is not None
    assert len(telegram.fake.bot_messages(GROUP)) == 1

    telegram.fake.fail("editMessageText", 429, retry_after=30)
    await telegram.click(ALICE, card, "Approve")
    await telegram.deliver()
    [limited] = telegram.fake.sent("editMessageText", ok_only=False)
    assert limited.status == 429
    # The outbox holds the chat (in the database, for every process) until then.
    clock.advance(timedelta(seconds=29))
    await telegram.deliver()
    assert telegram.fake.sent("editMessageText", ok_only=False) == [limited]
    clock.advance(timedelta(seconds=2))
    await telegram.deliver()
    card = telegram.fake.card_for(request.id, GROUP)
    assert card is not None
    assert card.buttons() == []


async def test_health_reflects_the_bot_api(telegram: TelegramHarness):
    adapter = telegram.adapter
    assert adapter is not None
    assert await adapter.check_health() is True
    telegram.fake.fail("getMe", 401, description="Unauthorized")
    assert await adapter.check_health() is False


# -- webhook security ----------------------------------------------------------------------------


def test_webhook_mode_refuses_to_start_without_a_secret(service):
    with pytest.raises(TelegramConfigError, match="webhook_secret"):
        TelegramAdapter(token=TOKEN, public_url="http://127.0.0.1:1", mode="webhook")


@pytest.mark.parametrize("mode", ["polling"])
async def test_polling_mode_has_no_webhook_route(telegram: TelegramHarness):
    assert telegram.adapter is not None
    assert telegram.adapter.router().routes == []
    assert telegram.fake.webhook_url is None


async def test_an_unreachable_bot_api_at_start_is_retried_in_the_background(
    telegram: TelegramHarness,
):
    await telegram.stop_adapter()
    telegram.fake.fail("getMe", 502)
    adapter = await telegram.start_adapter()  # returns although getMe failed
    assert await adapter.check_health() is False

    async def healthy() -> bool:
        return await adapter.check_health()

    await wait_for(healthy, within=10)
    request = await telegram.create()
    card = await telegram.posted_card(request)
    assert await telegram.click(ALICE, card, "Approve") == "Approved"


def test_the_adapter_is_built_from_settings(service):
    settings = TelegramSettings(
        bot_token="123:abc",
        mode="webhook",
        webhook_secret="a-secret",
        api_url="http://127.0.0.1:1/bot",
    )
    adapter = build_telegram_adapter(settings, public_url="https://so.example/")
    assert adapter.mode == "webhook"
    assert adapter.webhook_url == "https://so.example/telegram/webhook"
    [route] = adapter.router().routes
    assert isinstance(route, APIRoute)
    assert route.path == "/telegram/webhook"
