"""Teams delivery: direct messages through the chat an install gives, cards that cannot be
delivered, tokens, the service URL Teams names, and what the route refuses."""

from __future__ import annotations

import json
from datetime import timedelta

from fastapi.routing import APIRoute
from pydantic import SecretStr

from adapters.teams import build_teams_adapter
from approvals.machine import Status
from config.schema import TeamsSettings
from tests.adapters.teams.conftest import CHANNEL, DAVE, PUBLIC_URL, TeamsWorld

MIN = timedelta(minutes=1)


async def escalate_to_dave(teams: TeamsWorld) -> str:
    """An ``infra.*`` request past its first level: its card goes to dave by DM."""
    request = await teams.create("infra.restart")
    await teams.deliver()
    teams.clock.advance(10 * MIN + timedelta(seconds=1))
    await teams.service.process_due()
    await teams.deliver()
    return request.id


def dave_key() -> str:
    return f"teams:user:{DAVE}"


async def failures(teams: TeamsWorld, request_id: str) -> list[str]:
    """The request's failed deliveries to Teams, as audited."""
    found = [
        json.dumps(json.loads(entry.data))
        for entry in await teams.audit(request_id)
        if entry.kind == "delivery_failed"
    ]
    return [failure for failure in found if "teams:" in failure]


async def test_a_dm_goes_to_the_chat_the_install_gave(teams: TeamsWorld) -> None:
    install = teams.fake.install_activity(DAVE)
    response = await teams.client.post(install)
    assert response.status_code == 200
    request_id = await escalate_to_dave(teams)
    card = await teams.card(request_id, dave_key())
    assert card.conversation_id == install["conversation"]["id"]
    assert teams.fake.calls_of("create_conversation") == []


async def test_a_dm_without_a_known_chat_asks_teams_for_it_once(teams: TeamsWorld) -> None:
    # Installed while signoff was not listening: Teams still opens (finds) the chat.
    chat = teams.fake.install_for(DAVE)
    first = await escalate_to_dave(teams)
    second = await escalate_to_dave(teams)
    for request_id in (first, second):
        assert (await teams.card(request_id, dave_key())).conversation_id == chat
    assert len(teams.fake.calls_of("create_conversation")) == 1


async def test_a_dm_to_someone_without_the_app_fails_for_good_and_says_why(
    teams: TeamsWorld,
) -> None:
    request_id = await escalate_to_dave(teams)
    teams.clock.advance(timedelta(hours=1))
    await teams.deliver()
    assert len(teams.fake.calls_of("create_conversation")) == 1  # not retried
    [failure] = await failures(teams, request_id)
    assert "not installed for them" in failure
    assert (await teams.get(request_id)).status is Status.PENDING


async def test_tokens_are_fetched_once_for_many_calls(teams: TeamsWorld) -> None:
    for _ in range(5):
        await teams.posted()
    assert len(teams.fake.posts_in(CHANNEL)) == 5
    assert teams.fake.token_requests == 1


async def test_a_refused_token_is_replaced_and_the_card_still_arrives(teams: TeamsWorld) -> None:
    await teams.posted()
    teams.fake.expire_tokens()
    request = await teams.create()
    await teams.deliver()
    assert len(teams.fake.posts_in(CHANNEL)) == 1  # refused with 401, to be retried
    teams.clock.advance(MIN)
    await teams.deliver()
    assert len(teams.fake.posts_in(CHANNEL)) == 2
    assert (await teams.card(request.id)).card is not None
    assert teams.fake.token_requests == 2


async def test_cards_follow_the_service_url_teams_names(teams: TeamsWorld) -> None:
    emea = teams.fake.service_url_for("emea")
    response = await teams.client.post(teams.fake.install_activity(DAVE, service_url=emea))
    assert response.status_code == 200
    request_id, card = await teams.posted()
    assert card.region == "emea"
    assert request_id


async def test_a_card_too_large_for_teams_is_not_retried(teams: TeamsWorld) -> None:
    teams.fake.fail_next("send", 413, times=5)
    request = await teams.create()
    await teams.deliver()
    teams.clock.advance(timedelta(hours=1))
    await teams.deliver()
    assert len(teams.fake.calls_of("send")) == 1
    [failure] = await failures(teams, request.id)
    assert "413" in failure


async def test_a_burst_to_one_channel_keeps_within_teams_limits(teams: TeamsWorld) -> None:
    teams.fake.enforce_rate_limits = True
    for _ in range(12):
        await teams.create()
    await teams.deliver()
    assert len(teams.fake.posts_in(CHANNEL)) == 12
    assert teams.fake.throttled == 0
    [times] = teams.fake.send_times.values()
    assert times[7] - times[0] >= 1.0  # the eighth waited for the 7-per-second window


async def test_the_route_refuses_a_body_that_is_not_an_activity(teams: TeamsWorld) -> None:
    for body in (b"not json", b"[1, 2]", b"\xff\xfe"):
        response = await teams.client.http.post(
            "/teams/messages", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, body
        assert response.json()["error"] == "bad_request"


async def test_stopping_closes_every_connection(teams: TeamsWorld) -> None:
    await teams.posted()
    adapter = teams.client.adapter
    sdk_clients = [adapter._app.http_client.http, adapter._app.api.http.http]
    await adapter.stop()
    assert all(client.is_closed for client in sdk_clients)


async def test_build_teams_adapter_from_settings() -> None:
    settings = TeamsSettings(
        app_id="00000000-0000-0000-0000-0000000000a1",
        app_password=SecretStr("s3cret"),
        tenant_id="00000000-0000-0000-0000-0000000000b2",
        login_url="http://127.0.0.1:1",
    )
    adapter = build_teams_adapter(settings, public_url=PUBLIC_URL)
    assert adapter.min_send_interval == timedelta(0)  # the adapter paces itself
    [route] = adapter.router().routes
    assert isinstance(route, APIRoute)
    assert route.path == "/teams/messages"
    assert not await adapter.check_health()  # nothing answers at the login URL
    await adapter.stop()
