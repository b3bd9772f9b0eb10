"""An escalation from Telegram to email, end to end.

Level 1 asks alice in a Telegram group (the fake Bot API, real python-telegram-bot); nobody
answers, so level 2 mails bob (the fake SMTP relay, real aiosmtplib). Bob opens the link,
confirms, and the request is approved: the Telegram card shows it, and bob's mail thread
gets the outcome.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from adapters.telegram import TelegramAdapter
from approvals.clock import ManualClock
from approvals.directory import Destination, DestinationKind, Directory, Person
from approvals.machine import Status
from approvals.model import CreateCommand, Verdict
from approvals.outcomes import Created
from approvals.policy import Level, Policy, PolicySet
from approvals.service import Rules
from approvals.store import SqlStore
from tests.adapters.email.conftest import (
    PUBLIC_URL,
    about,
    address,
    body,
    confirm_client,
    email_adapter,
    is_first,
    links_in,
)
from tests.fakes.smtp import FakeSmtpRelay
from tests.fakes.telegram import TOKEN, FakeBotApi
from tests.world import build_test_runtime

GROUP = -1001234
ALICE_ON_TELEGRAM = 100001
MIN = timedelta(minutes=1)
BOB = address("bob")


def escalating_rules() -> Rules:
    people = {
        "alice": Person("alice", {"telegram": str(ALICE_ON_TELEGRAM)}),
        "bob": Person("bob", {"email": BOB}),
    }
    policy = Policy(
        name="escalating",
        levels=(
            Level(approvers=("alice",), notify=("ops-telegram",), timeout=10 * MIN),
            Level(approvers=("bob",), notify=("dm",), timeout=30 * MIN),
        ),
    )
    directory = Directory(
        people=people,
        channels={"ops-telegram": (Destination("telegram", DestinationKind.CHANNEL, str(GROUP)),)},
        platforms=frozenset({"telegram", "email"}),
    )
    return Rules(policies=PolicySet((policy,)), directory=directory)


@pytest.fixture
async def telegram() -> AsyncIterator[FakeBotApi]:
    api = FakeBotApi()
    api.add_group(GROUP, "ops")
    api.add_user(ALICE_ON_TELEGRAM, "Alice")
    await api.start()
    yield api
    await api.close()


async def test_an_unanswered_telegram_card_escalates_to_email_and_is_decided_there(
    store: SqlStore, clock: ManualClock, telegram: FakeBotApi, relay: FakeSmtpRelay
) -> None:
    runtime = build_test_runtime(store, clock, escalating_rules())
    telegram_adapter = TelegramAdapter(
        token=TOKEN, public_url=PUBLIC_URL, mode="polling", api_url=telegram.base_url
    )
    await telegram_adapter.start(runtime.service, inbound=False)
    runtime.dispatcher.use_adapter("telegram", telegram_adapter)
    runtime.dispatcher.use_adapter("email", email_adapter(relay, runtime))
    client = await confirm_client(runtime)
    try:
        created = await runtime.service.create(
            CreateCommand(agent="deploy-bot", action="deploy.web", title="Deploy web 2.4")
        )
        assert isinstance(created, Created)
        request_id = created.request.id
        await runtime.dispatcher.drain()
        [card] = telegram.chat_messages(GROUP)
        assert "Deploy web 2.4" in card.text
        assert relay.received == []

        clock.advance(10 * MIN + timedelta(seconds=1))
        await runtime.service.process_due()
        await runtime.dispatcher.drain()
        [mail] = relay.to(BOB)
        assert about(mail, request_id)
        assert is_first(mail)
        assert "Escalated to level 1" in body(mail)
        assert "Escalated to level 1" in telegram.chat_messages(GROUP)[0].text

        approve = links_in(mail)[Verdict.APPROVE]
        assert (await client.get(approve)).status_code == 200
        assert (await runtime.service.get(request_id)).status is Status.PENDING  # type: ignore[union-attr]
        answer = await client.post(
            approve, data={"confirm": "1"}, headers={"Sec-Fetch-Site": "same-origin"}
        )
        assert answer.status_code == 200, answer.text
        request = await runtime.service.get(request_id)
        assert request is not None
        assert request.status is Status.APPROVED
        assert request.decision is not None
        assert (request.decision.by, request.decision.platform) == ("bob", "email")
        assert [(vote.platform, vote.identity) for vote in request.votes] == [("email", BOB)]

        clock.advance(MIN)  # past Telegram's pacing of edits to one chat
        await runtime.dispatcher.drain()
        assert "Approved by bob" in telegram.chat_messages(GROUP)[0].text
        first, outcome = relay.to(BOB)
        assert str(outcome["In-Reply-To"]).strip() == str(first["Message-ID"]).strip()
        assert "Approved by bob" in body(outcome)
        assert links_in(outcome) == {}
    finally:
        await client.aclose()
        await telegram_adapter.stop()
