"""Slack, in HTTP mode and in Socket Mode, under the adapter contract."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from adapters.slack import SlackAdapter
from approvals.directory import Destination, DestinationKind
from approvals.model import Verdict
from approvals.ports import Adapter
from approvals.store import SqlStore
from bot.runtime import Runtime
from tests.adapters.contract import STRANGER, AdapterContract, Shown
from tests.adapters.slack.conftest import CHANNEL, start_adapter
from tests.fakes.slack import FakeSlack, Fault, Message
from tests.waiting import wait_for

IDENTITIES = {"alice": "U0ALICE", "bob": "U0BOB", "carol": "U0CAROL", STRANGER: "U0STRANGER"}
ACTIONS = {Verdict.APPROVE: "signoff_approve", Verdict.DENY: "signoff_deny"}


def modal_text(view: dict[str, Any]) -> str:
    """Every text of a modal's blocks, one per line."""
    found: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(view["blocks"])
    return "\n".join(found)


class SlackDriver:
    """The real Slack adapter against the fake Slack, in one mode."""

    platform = "slack"
    notify = "contract-room"
    channels = {notify: (Destination("slack", DestinationKind.CHANNEL, CHANNEL),)}

    def __init__(self, fake: FakeSlack, mode: str) -> None:
        self.fake = fake
        self.mode = mode
        self.adapter: SlackAdapter | None = None
        self.store: SqlStore | None = None
        self.last_click: dict[str, Any] | None = None

    def identity(self, person: str) -> str:
        return IDENTITIES[person]

    async def start(self, runtime: Runtime) -> Adapter:
        self.store = runtime.store
        self.adapter = await start_adapter(self.fake, runtime.service, self.mode)
        return self.adapter

    async def stop(self) -> None:
        if self.adapter is not None:
            await self.adapter.stop()
        if self.fake.events is not None:
            await self.fake.events.aclose()
            self.fake.events = None

    async def card(self, request_id: str) -> Message:
        assert self.store is not None
        async with self.store.read() as reader:
            deliveries = await reader.deliveries(request_id)
        [ref] = [d.ref for d in deliveries if d.ref is not None]
        return self.fake.messages[(ref["channel"], ref["ts"])]

    async def shown(self, request_id: str) -> Shown:
        card = await self.card(request_id)
        return Shown(card.all_text, [button["text"]["text"] for button in card.buttons])

    async def _click(self, payload: dict[str, Any]) -> None:
        self.last_click = payload
        ack = await self.fake.deliver(payload)
        if self.mode == "http":
            assert ack["status"] == 200, ack

    async def click(self, request_id: str, person: str, verdict: Verdict) -> None:
        card = await self.card(request_id)
        await self._click(
            self.fake.click_payload(card, user=IDENTITIES[person], action_id=ACTIONS[verdict])
        )

    async def deny_with_reason(self, request_id: str, person: str, reason: str) -> None:
        card = await self.card(request_id)
        opened = len(self.fake.views)
        await self._click(
            self.fake.click_payload(card, user=IDENTITIES[person], action_id="signoff_deny_reason")
        )

        async def modal_opened() -> bool:
            return len(self.fake.views) > opened

        await wait_for(modal_opened)
        await self.fake.submit_view(self.fake.views[-1], user=IDENTITIES[person], reason=reason)

    async def confirmation(self, request_id: str, person: str) -> Shown:
        async def modal_opened() -> bool:
            return bool(self.fake.views)

        await wait_for(modal_opened)
        view = self.fake.views[-1]
        return Shown(modal_text(view), [view["submit"]["text"]])

    async def confirm(self, request_id: str, person: str) -> None:
        await self.fake.submit_view(self.fake.views[-1], user=IDENTITIES[person], reason=None)

    async def forged_click(self, request_id: str, person: str) -> None:
        card = await self.card(request_id)
        if self.mode == "http":
            # Signed with a secret that is not the app's: Bolt answers 401 and runs nothing.
            payload = self.fake.click_payload(
                card, user=IDENTITIES[person], action_id=ACTIONS[Verdict.APPROVE]
            )
            body = urlencode({"payload": json.dumps(payload)}).encode()
            headers = self.fake.signed_headers(body, secret="not-the-signing-secret")
            response = await self.fake.post_events(body, headers)
            assert response.status_code == 401
            return
        # Socket Mode is Slack's own connection: a forgery can only claim another workspace.
        await self._click(
            self.fake.click_payload(
                card, user=IDENTITIES[person], action_id=ACTIONS[Verdict.APPROVE], team="T0EVIL"
            )
        )

    async def replay(self) -> None:
        assert self.last_click is not None
        await self._click(self.last_click)

    async def click_with_other_button(self, card_of: str, button_of: str, person: str) -> None:
        card = await self.card(card_of)
        other = await self.card(button_of)
        value = other.button(ACTIONS[Verdict.APPROVE])["value"]
        await self._click(
            self.fake.click_payload(
                card, user=IDENTITIES[person], action_id=ACTIONS[Verdict.APPROVE], value=value
            )
        )

    async def notices(self, person: str) -> list[str]:
        return [ephemeral.text for ephemeral in self.fake.ephemerals_for(IDENTITIES[person])]

    async def replies(self, request_id: str) -> list[str]:
        card = await self.card(request_id)
        return [
            message.text
            for message in self.fake.messages.values()
            if message.channel == card.channel and message.thread_ts == card.ts
        ]

    def fail_sends(self, status: int, *, times: int = 1, retry_after: int | None = None) -> None:
        error = "ratelimited" if status == 429 else None
        self.fake.fail_next(
            "chat.postMessage", Fault(status, error, retry_after=retry_after), times=times
        )

    def posts(self) -> int:
        return len(self.fake.posts_in(CHANNEL))


class TestSlackContract(AdapterContract):
    @pytest.fixture(params=["http", "socket"])
    async def driver(self, request: pytest.FixtureRequest, fake_slack: FakeSlack) -> SlackDriver:
        return SlackDriver(fake_slack, str(request.param))
