"""Telegram, with long polling and with the webhook, under the adapter contract."""

from __future__ import annotations

from typing import Any

import pytest

from approvals.directory import Destination, DestinationKind
from approvals.model import Verdict
from approvals.ports import Adapter
from bot.runtime import Runtime
from tests.adapters.contract import STRANGER, AdapterContract, Shown
from tests.adapters.telegram.conftest import ALICE, BOB, GROUP, TelegramHarness
from tests.adapters.telegram.conftest import STRANGER as STRANGER_ID
from tests.fakes.telegram import FakeBotApi, FakeMessage

CAROL = 100003
IDENTITIES = {"alice": ALICE, "bob": BOB, "carol": CAROL, STRANGER: STRANGER_ID}
LABELS = {Verdict.APPROVE: "Approve", Verdict.DENY: "⛔ Deny"}


class TelegramDriver:
    """The real Telegram adapter against the fake Bot API, in one mode."""

    platform = "telegram"
    notify = "contract-room"
    channels = {notify: (Destination("telegram", DestinationKind.CHANNEL, str(GROUP)),)}

    def __init__(self, fake: FakeBotApi, mode: str) -> None:
        self.fake = fake
        self.mode = mode
        self.harness: TelegramHarness | None = None
        self.clicks: list[tuple[int, dict[str, Any]]] = []

    def identity(self, person: str) -> str:
        return str(IDENTITIES[person])

    async def start(self, runtime: Runtime) -> Adapter:
        self.harness = TelegramHarness(mode=self.mode, fake=self.fake, runtime=runtime)
        await self.harness.__aenter__()
        assert self.harness.adapter is not None
        return self.harness.adapter

    async def stop(self) -> None:
        if self.harness is not None:
            await self.harness.__aexit__(None, None, None)

    def card(self, request_id: str) -> FakeMessage:
        card = self.fake.card_for(request_id, GROUP)
        assert card is not None, f"no card for {request_id}"
        return card

    async def shown(self, request_id: str) -> Shown:
        card = self.card(request_id)
        return Shown(card.text, [button["text"] for button in card.buttons()])

    async def _press(self, person: str, card: FakeMessage, data: str) -> dict[str, Any]:
        update = self.fake.callback_update(IDENTITIES[person], card.to_json(), data)
        self.clicks.append((IDENTITIES[person], update))
        assert await self.fake.deliver(update) == 200
        return update

    async def click(self, request_id: str, person: str, verdict: Verdict) -> None:
        card = self.card(request_id)
        await self._press(person, card, card.button_data(LABELS[verdict]))

    async def deny_with_reason(self, request_id: str, person: str, reason: str) -> None:
        card = self.card(request_id)
        await self._press(person, card, card.button_data("Deny with reason"))
        prompt = await self.fake.until(
            lambda: next(
                (
                    message
                    for message in self.fake.bot_messages(GROUP)
                    if message.reply_to is not None
                    and message.reply_to.message_id == card.message_id
                    and (message.reply_markup or {}).get("force_reply")
                ),
                None,
            )
        )
        await self.fake.reply(IDENTITIES[person], prompt, reason)

    async def _confirmation(self, request_id: str) -> FakeMessage:
        card = self.card(request_id)
        return await self.fake.until(
            lambda: next(
                (
                    message
                    for message in self.fake.bot_messages(GROUP)
                    if message.reply_to is not None
                    and message.reply_to.message_id == card.message_id
                    and any("Confirm" in button["text"] for button in message.buttons())
                ),
                None,
            )
        )

    async def confirmation(self, request_id: str, person: str) -> Shown:
        message = await self._confirmation(request_id)
        return Shown(message.text, [button["text"] for button in message.buttons()])

    async def confirm(self, request_id: str, person: str) -> None:
        message = await self._confirmation(request_id)
        await self._press(person, message, message.button_data("Confirm approve"))

    async def forged_click(self, request_id: str, person: str) -> None:
        card = self.card(request_id)
        data = card.button_data(LABELS[Verdict.APPROVE])
        update = self.fake.callback_update(IDENTITIES[person], card.to_json(), data)
        if self.mode == "webhook":
            # Without the webhook's secret token the adapter answers 403 and runs nothing.
            assert await self.fake.deliver(update, secret="not-the-secret") == 403
            return
        # Long polling is Telegram's own connection: a forgery can only be a button that
        # signoff did not make.
        await self._press(person, card, "so1:a:" + "forged-request-id")

    async def replay(self) -> None:
        _user, update = self.clicks[-1]
        assert await self.fake.deliver(update) == 200

    async def click_with_other_button(self, card_of: str, button_of: str, person: str) -> None:
        other = self.card(button_of).button_data(LABELS[Verdict.APPROVE])
        await self._press(person, self.card(card_of), other)

    async def notices(self, person: str) -> list[str]:
        answers = (self.fake.answer_to(update) for user, update in self.clicks)
        return [
            answer
            for (user, _update), answer in zip(self.clicks, answers, strict=True)
            if user == IDENTITIES[person] and answer
        ]

    async def replies(self, request_id: str) -> list[str]:
        card = self.card(request_id)
        return [
            message.text
            for message in self.fake.bot_messages(GROUP)
            if message.reply_to is not None and message.reply_to.message_id == card.message_id
        ]

    def fail_sends(self, status: int, *, times: int = 1, retry_after: int | None = None) -> None:
        for _ in range(times):
            self.fake.fail("sendMessage", status, retry_after=retry_after)

    def posts(self) -> int:
        return sum(1 for message in self.fake.bot_messages(GROUP) if message.reply_to is None)


class TestTelegramContract(AdapterContract):
    @pytest.fixture(params=["polling", "webhook"])
    async def driver(self, request: pytest.FixtureRequest, fake: FakeBotApi) -> TelegramDriver:
        fake.add_user(CAROL, "Carol")
        return TelegramDriver(fake, str(request.param))
