"""A Teams world for tests: the fake Teams platform, the real adapter on the Teams SDK, and
activities posted to the adapter's route the way the Bot Connector posts them.

The fake serves in its own thread (the SDK fetches signing keys with a blocking call);
activities reach ``/teams/messages`` on a FastAPI app through httpx's ASGI transport, each
with a JWT the fake signs as the Bot Connector would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from adapters.teams import MESSAGES_PATH
from adapters.teams.adapter import TeamsAdapter
from adapters.teams.cards import APPROVE, DENY, DENY_WITH_REASON
from adapters.teams.tokens import AppTokens
from approvals.clock import ManualClock
from approvals.directory import Destination, DestinationKind, Directory, Person
from approvals.model import Verdict
from approvals.ports import VoteSink
from approvals.service import Rules
from bot.runtime import Runtime
from tests.adapters.world import ChatWorld, scenario_policies
from tests.fakes.teams import FakeTeams, Message, card_actions, card_text
from tests.world import make_directory

PUBLIC_URL = "http://127.0.0.1:8080"
TEAM = "19:team0000000000000000000000000000@thread.tacv2"
CHANNEL = "19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2"
CHANNEL_KEY = f"teams:channel:{CHANNEL}"
ALICE = "0a11ce00-0000-4000-8000-000000000001"
BOB = "0b0b0000-0000-4000-8000-000000000002"
DAVE = "0da7e000-0000-4000-8000-000000000004"
STRANGER = "05705000-0000-4000-8000-00000000dead"
IDENTITIES = {"alice": ALICE, "bob": BOB, "dave": DAVE}
ACTIONS = {Verdict.APPROVE: APPROVE, Verdict.DENY: DENY}


def teams_directory() -> Directory:
    """The test directory, with Teams accounts for alice, bob and dave and a Teams channel."""
    base = make_directory()
    people = {
        name: Person(
            name,
            {**person.identities, "teams": IDENTITIES[name]}
            if name in IDENTITIES
            else dict(person.identities),
        )
        for name, person in base.people.items()
    }
    channels = {
        **base.channels,
        "ops-teams": (Destination("teams", DestinationKind.CHANNEL, CHANNEL),),
    }
    return Directory(people=people, channels=channels, platforms=base.platforms | {"teams"})


@pytest.fixture
def rules() -> Rules:
    policies = scenario_policies(
        "ops-teams",
        pair=("alice", "bob", "dave"),
        first="bob",
        escalation="dave",
        everyone=("alice", "bob"),
    )
    return Rules(policies=policies, directory=teams_directory())


@pytest.fixture(autouse=True)
def _local_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's key fetch (urllib) and httpx both honour proxy settings: none here."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


@pytest.fixture
def fake_teams() -> Iterator[FakeTeams]:
    with FakeTeams() as fake:
        fake.add_channel(TEAM, CHANNEL)
        yield fake


def teams_adapter(fake: FakeTeams, **options: Any) -> TeamsAdapter:
    """The adapter wired to ``fake`` as the application wires it from config."""
    tokens = AppTokens(
        client_id=fake.app_id, login_url=fake.login_endpoint, client_secret=fake.app_password
    )
    options.setdefault("min_send_interval", timedelta(0))
    return TeamsAdapter(
        app_id=fake.app_id,
        tenant_id=fake.tenant_id,
        tokens=tokens,
        public_url=PUBLIC_URL,
        api_url=fake.service_url,
        openid_metadata_url=fake.openid_metadata_url,
        token_issuer=fake.issuer,
        login_url=fake.login_endpoint,
        **options,
    )


@dataclass
class TeamsClient:
    """Posts activities to a started adapter's route as the Bot Connector does, and keeps
    what each person was answered."""

    fake: FakeTeams
    adapter: TeamsAdapter
    http: httpx.AsyncClient
    answers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    last: dict[str, Any] | None = None

    @classmethod
    async def start(cls, fake: FakeTeams, sink: VoteSink, **options: Any) -> TeamsClient:
        adapter = teams_adapter(fake, **options)
        await adapter.start(sink)
        app = FastAPI()
        app.include_router(adapter.router())
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL)
        return cls(fake, adapter, http)

    async def post(self, activity: dict[str, Any], **sign: Any) -> httpx.Response:
        """``activity`` with a Bot Connector token (``sign`` tampers with it)."""
        self.last = activity
        return await self.http.post(
            MESSAGES_PATH, json=activity, headers=self.fake.headers_for(activity, **sign)
        )

    async def click(
        self,
        card: Message,
        aad_object_id: str,
        action: str,
        *,
        request_id: str | None = None,
        reason: str | None = None,
        tenant_id: str | None = None,
    ) -> dict[str, Any]:
        """``aad_object_id`` presses ``action`` on ``card``; returns the invoke answer."""
        data: dict[str, Any] = {"action": action}
        data["request"] = request_id or _request_of(card)
        if reason is not None:
            data["reason"] = reason
        activity = self.fake.invoke_activity(
            card, user_aad_id=aad_object_id, verb=action, data=data, tenant_id=tenant_id
        )
        response = await self.post(activity)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        self.answers.setdefault(aad_object_id, []).append(answer)
        return answer

    def told(self, aad_object_id: str) -> list[str]:
        """The messages Teams showed this person after their clicks, oldest first."""
        return [
            answer["value"]
            for answer in self.answers.get(aad_object_id, [])
            if answer.get("type") == "application/vnd.microsoft.activity.message"
        ]

    async def close(self) -> None:
        await self.http.aclose()
        await self.adapter.stop()


def _request_of(card: Message) -> str:
    for action in card_actions(card):
        data = action.get("data") or {}
        if data.get("action") in (APPROVE, DENY, DENY_WITH_REASON):
            return str(data["request"])
    raise AssertionError(f"no signoff button on the card: {card_text(card)}")


@dataclass
class TeamsWorld(ChatWorld):
    clock: ManualClock
    fake: FakeTeams
    client: TeamsClient

    async def card(self, request_id: str, destination: str = CHANNEL_KEY) -> Message:
        ref = await self.ref(request_id, destination)
        message = self.fake.message(ref["conversation_id"], ref["activity_id"])
        assert message is not None
        return message

    async def posted(self, action: str = "deploy.web", **extra: Any) -> tuple[str, Message]:
        request = await self.create(action, **extra)
        await self.deliver()
        return request.id, await self.card(request.id)


@pytest.fixture
async def teams(
    fake_teams: FakeTeams, runtime: Runtime, clock: ManualClock
) -> AsyncIterator[TeamsWorld]:
    client = await TeamsClient.start(fake_teams, runtime.service)
    runtime.dispatcher.use_adapter("teams", client.adapter)
    yield TeamsWorld(
        service=runtime.service,
        store=runtime.store,
        clock=clock,
        dispatcher=runtime.dispatcher,
        fake=fake_teams,
        client=client,
    )
    await client.close()
