"""Discord in the whole application: config to adapter, agent API to card, click to agent.

The runtime is built from a config file's text, exactly as `signoff serve` builds it; the
real discord.py talks to the fake Discord and clicks arrive over its gateway.
"""

from __future__ import annotations

import asyncio

import httpx
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.app import AppOptions, build_runtime
from bot.http import build_http_app
from config import load_config_text
from tests.adapters.discord.conftest import ALICE, BOT_TOKEN, CHANNEL
from tests.waiting import wait_for

CONFIG = """\
version: 1
database: {{url: "sqlite:///{db}"}}
people:
  alice: {{discord: "200001"}}
  bob: {{discord: "200002"}}
channels:
  ops-discord: {{discord: "300001"}}
platforms:
  discord:
    bot_token: "${{DISCORD_BOT_TOKEN}}"
    api_url: "{api_url}"
    gateway_url: "{gateway_url}"
agents:
  deploy-bot: {{}}
policies:
  - name: default
    levels: [{{approvers: [alice, bob], notify: [ops-discord, web], timeout: 30m}}]
"""


async def test_agent_request_is_approved_by_a_click_in_discord(tmp_path, fake_discord):
    config = load_config_text(
        CONFIG.format(
            db=tmp_path / "app.db",
            api_url=fake_discord.api_url,
            gateway_url=fake_discord.gateway_url,
        ),
        "signoff.yaml",
        environ={"DISCORD_BOT_TOKEN": BOT_TOKEN},
    )
    runtime = build_runtime(config, AppOptions(sweep_interval=60))
    assert "discord" in runtime.adapters
    app = build_http_app(runtime)
    await runtime.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")
    try:
        assert fake_discord.api_url == Route.BASE
        assert str(DiscordWebSocket.DEFAULT_GATEWAY) == fake_discord.gateway_url
        key = await runtime.access.create_agent_key("deploy-bot")
        headers = {"Authorization": f"Bearer {key}"}
        created = await client.post(
            "/v1/approvals",
            headers=headers,
            json={"action": "deploy.web", "title": "Deploy @everyone web"},
        )
        assert created.status_code == 201
        request_id = created.json()["id"]

        async def card_posted():
            return fake_discord.cards_in(CHANNEL)

        [card] = await wait_for(card_posted)
        assert "@everyone" not in card.all_text
        assert card.allowed_mentions == {"parse": []}

        poll = asyncio.create_task(
            client.get(f"/v1/approvals/{request_id}?wait=30", headers=headers)
        )
        click = await fake_discord.click(card, user=ALICE, label="Approve")
        answered = await asyncio.wait_for(poll, timeout=30)
        assert answered.json()["status"] == "approved"
        assert answered.json()["decision"]["platform"] == "discord"
        assert click.response_types == [6]

        async def card_shows_the_outcome():
            [current] = fake_discord.cards_in(CHANNEL)
            return not current.buttons and "Approved by alice" in current.field("Status")

        await wait_for(card_shows_the_outcome)
        ready = await client.get("/readyz")
        assert ready.json()["checks"]["discord"] == "ok"
    finally:
        await client.aclose()
        await runtime.stop()
