"""Microsoft Teams under the adapter contract.

Cards go to a Teams channel on the fake platform; a click is an ``adaptiveCard/action``
invoke posted with a Bot Connector token, and what the person is told is the invoke's
answer, which Teams shows to that person alone.
"""

from __future__ import annotations

from typing import Any

import pytest

from adapters.teams.cards import APPROVE, CONFIRM, DENY_WITH_REASON
from approvals.directory import Destination, DestinationKind
from approvals.model import Verdict
from approvals.ports import Adapter
from approvals.store import SqlStore
from bot.runtime import Runtime
from tests.adapters.contract import STRANGER, AdapterContract, Shown
from tests.adapters.teams.conftest import ACTIONS, CHANNEL, TeamsClient
from tests.fakes.teams import FakeTeams, Message, card_actions, card_text

AAD_IDS = {
    "alice": "0a11ce00-0000-4000-8000-00000000000a",
    "bob": "0b0b0000-0000-4000-8000-00000000000b",
    "carol": "0ca201e0-0000-4000-8000-00000000000c",
    STRANGER: "05705000-0000-4000-8000-00000000dead",
}


class TeamsDriver:
    """The real Teams adapter against the fake Teams platform."""

    platform = "teams"
    notify = "contract-room"
    channels = {notify: (Destination("teams", DestinationKind.CHANNEL, CHANNEL),)}

    def __init__(self, fake: FakeTeams) -> None:
        self.fake = fake
        self.client: TeamsClient | None = None
        self.store: SqlStore | None = None

    def identity(self, person: str) -> str:
        return AAD_IDS[person]

    async def start(self, runtime: Runtime) -> Adapter:
        self.store = runtime.store
        self.client = await TeamsClient.start(self.fake, runtime.service)
        return self.client.adapter

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()

    @property
    def teams(self) -> TeamsClient:
        assert self.client is not None
        return self.client

    async def card(self, request_id: str) -> Message:
        assert self.store is not None
        async with self.store.read() as reader:
            deliveries = await reader.deliveries(request_id)
        [ref] = [d.ref for d in deliveries if d.ref is not None]
        return self.fake.message(ref["conversation_id"], ref["activity_id"])

    async def shown(self, request_id: str) -> Shown:
        card = await self.card(request_id)
        return Shown(card_text(card), [action["title"] for action in card_actions(card)])

    async def click(self, request_id: str, person: str, verdict: Verdict) -> None:
        await self.teams.click(await self.card(request_id), AAD_IDS[person], ACTIONS[verdict])

    async def deny_with_reason(self, request_id: str, person: str, reason: str) -> None:
        card = await self.card(request_id)
        await self.teams.click(card, AAD_IDS[person], DENY_WITH_REASON, reason=reason)

    def _confirmation(self, person: str) -> dict[str, Any]:
        [*_, answer] = self.teams.answers[AAD_IDS[person]]
        assert answer["type"] == "application/vnd.microsoft.card.adaptive", answer
        card: dict[str, Any] = answer["value"]
        return card

    async def confirmation(self, request_id: str, person: str) -> Shown:
        shown = self._confirmation(person)
        return Shown(card_text(shown), [action["title"] for action in card_actions(shown)])

    async def confirm(self, request_id: str, person: str) -> None:
        [confirm] = [a for a in card_actions(self._confirmation(person)) if a["verb"] == CONFIRM]
        activity = self.fake.invoke_activity(
            await self.card(request_id),
            user_aad_id=AAD_IDS[person],
            verb=CONFIRM,
            data=confirm["data"],
        )
        response = await self.teams.post(activity)
        assert response.status_code == 200, response.text

    async def forged_click(self, request_id: str, person: str) -> None:
        # Signed with a key the Bot Connector's key set does not hold: 401, no handler runs.
        card = await self.card(request_id)
        activity = self.fake.invoke_activity(
            card,
            user_aad_id=AAD_IDS[person],
            verb=APPROVE,
            data={"action": APPROVE, "request": request_id},
        )
        response = await self.teams.post(activity, key="unknown")
        assert response.status_code == 401

    async def replay(self) -> None:
        # The same activity again, as a redelivery or a replay would bring it; its answer
        # goes to whoever sent it, not to the person.
        assert self.teams.last is not None
        response = await self.teams.post(self.teams.last)
        assert response.status_code == 200

    async def click_with_other_button(self, card_of: str, button_of: str, person: str) -> None:
        card = await self.card(card_of)
        await self.teams.click(card, AAD_IDS[person], APPROVE, request_id=button_of)

    async def notices(self, person: str) -> list[str]:
        return self.teams.told(AAD_IDS[person])

    async def replies(self, request_id: str) -> list[str]:
        card = await self.card(request_id)
        replies = self.fake.replies_to(card.conversation_id, card.activity_id)
        return [card_text(reply) for reply in replies]

    def fail_sends(self, status: int, *, times: int = 1, retry_after: int | None = None) -> None:
        self.fake.fail_next("send", status, times=times, retry_after=retry_after)

    def posts(self) -> int:
        return len(self.fake.posts_in(CHANNEL))


class TestTeamsContract(AdapterContract):
    @pytest.fixture
    def driver(self, fake_teams: FakeTeams) -> Any:
        return TeamsDriver(fake_teams)
