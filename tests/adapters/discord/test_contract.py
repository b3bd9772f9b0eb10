"""Discord, over the gateway and REST, under the adapter contract."""

from __future__ import annotations

import pytest

from adapters.discord import DiscordAdapter
from approvals.directory import Destination, DestinationKind
from approvals.model import Verdict
from approvals.ports import Adapter
from approvals.store import SqlStore
from bot.runtime import Runtime
from tests.adapters.contract import STRANGER, AdapterContract, Shown
from tests.adapters.discord.conftest import ALICE, CAROL, CHANNEL, answered, start_adapter
from tests.adapters.discord.conftest import STRANGER as STRANGER_ID
from tests.fakes.discord import FakeDiscord, Fault, Interaction, Message
from tests.waiting import wait_for

BOB = "200002"
IDENTITIES = {"alice": ALICE, "bob": BOB, "carol": CAROL, STRANGER: STRANGER_ID}
LABELS = {Verdict.APPROVE: "Approve", Verdict.DENY: "Deny"}
REASON_LABELS = ("Deny…", "Deny with reason…")


class DiscordDriver:
    """The real Discord adapter against the fake Discord (gateway and REST)."""

    platform = "discord"
    notify = "contract-room"
    channels = {notify: (Destination("discord", DestinationKind.CHANNEL, CHANNEL),)}

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.adapter: DiscordAdapter | None = None
        self.store: SqlStore | None = None
        self.last_click: Interaction | None = None

    def identity(self, person: str) -> str:
        return IDENTITIES[person]

    async def start(self, runtime: Runtime) -> Adapter:
        self.store = runtime.store
        self.adapter = await start_adapter(self.fake, runtime.service)
        return self.adapter

    async def stop(self) -> None:
        if self.adapter is not None:
            await self.adapter.stop()

    async def card(self, request_id: str) -> Message:
        assert self.store is not None
        async with self.store.read() as reader:
            deliveries = await reader.deliveries(request_id)
        [ref] = [d.ref for d in deliveries if d.ref is not None]
        return self.fake.messages[(ref["channel_id"], ref["message_id"])]

    async def shown(self, request_id: str) -> Shown:
        card = await self.card(request_id)
        return Shown(card.all_text, [button["label"] for button in card.buttons])

    async def _answered(self, interaction: Interaction) -> None:
        self.last_click = interaction
        await wait_for(answered(interaction))

    async def click(self, request_id: str, person: str, verdict: Verdict) -> None:
        card = await self.card(request_id)
        await self._answered(
            await self.fake.click(card, user=IDENTITIES[person], label=LABELS[verdict])
        )

    async def deny_with_reason(self, request_id: str, person: str, reason: str) -> None:
        card = await self.card(request_id)
        [label] = [b["label"] for b in card.buttons if b["label"] in REASON_LABELS]
        opened = await self.fake.click(card, user=IDENTITIES[person], label=label)
        await wait_for(answered(opened))
        await self._answered(await self.fake.submit_modal(opened, reason=reason))

    async def confirmation(self, request_id: str, person: str) -> Shown:
        assert self.last_click is not None
        modal = self.last_click.modal
        assert modal is not None, "Approve opened no modal"
        texts = [str(c.get("content", "")) for c in modal.get("components") or []]
        return Shown("\n".join(texts), [str(modal.get("title", "")) + " (Submit)"])

    async def confirm(self, request_id: str, person: str) -> None:
        assert self.last_click is not None
        opened = self.last_click
        await self._answered(
            await self.fake.submit_modal(opened, reason="", user=IDENTITIES[person])
        )

    async def forged_click(self, request_id: str, person: str) -> None:
        # The gateway is Discord's own connection: a forgery can only claim to come from
        # another application.
        card = await self.card(request_id)
        await self._answered(
            await self.fake.click(
                card, user=IDENTITIES[person], label="Approve", application_id="999999"
            )
        )

    async def replay(self) -> None:
        assert self.last_click is not None
        await self.fake.push(self.last_click)

    async def click_with_other_button(self, card_of: str, button_of: str, person: str) -> None:
        other = (await self.card(button_of)).button("Approve")["custom_id"]
        card = await self.card(card_of)
        await self._answered(
            await self.fake.click(card, user=IDENTITIES[person], custom_id=str(other))
        )

    async def notices(self, person: str) -> list[str]:
        return self.fake.ephemerals_for(IDENTITIES[person])

    async def replies(self, request_id: str) -> list[str]:
        card = await self.card(request_id)
        return [
            message.content
            for message in self.fake.posts_in(CHANNEL)
            if (message.message_reference or {}).get("message_id") == card.id
        ]

    def fail_sends(self, status: int, *, times: int = 1, retry_after: int | None = None) -> None:
        # via=False: a 429 Discord.py does not wait out itself, as a long one would be.
        self.fake.fail_next(
            "create_message", Fault(status, retry_after=retry_after, via=False), times=times
        )

    def posts(self) -> int:
        return len(self.fake.cards_in(CHANNEL))


class TestDiscordContract(AdapterContract):
    @pytest.fixture
    def driver(self, fake_discord: FakeDiscord) -> DiscordDriver:
        return DiscordDriver(fake_discord)
