"""Slack in the whole application: config to adapter, agent API to card, click to agent.

The runtime is built from a config file's text, exactly as `signoff serve` builds it; the
real slack-bolt talks to the fake Slack, and clicks arrive as signed posts to the app's
own ``/slack/events``.
"""

from __future__ import annotations

import asyncio

import httpx

from bot.app import AppOptions, build_runtime
from bot.http import build_http_app
from config import load_config_text
from tests.adapters.slack.conftest import ALICE, BOT_TOKEN, CHANNEL, SIGNING_SECRET
from tests.waiting import wait_for

CONFIG = """\
version: 1
database: {{url: "sqlite:///{db}"}}
people:
  alice: {{slack: U0ALICE}}
  bob: {{slack: U0BOB}}
channels:
  ops-slack: {{slack: C0OPS}}
platforms:
  slack:
    bot_token: "${{SLACK_BOT_TOKEN}}"
    signing_secret: "${{SLACK_SIGNING_SECRET}}"
    mode: http
    api_url: "{api_url}"
agents:
  deploy-bot: {{}}
policies:
  - name: default
    levels: [{{approvers: [alice, bob], notify: [ops-slack, web], timeout: 30m}}]
"""


async def test_agent_request_is_approved_by_a_click_in_slack(tmp_path, fake_slack):
    config = load_config_text(
        CONFIG.format(db=tmp_path / "app.db", api_url=fake_slack.api_url),
        "signoff.yaml",
        environ={"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET},
    )
    runtime = build_runtime(config, AppOptions(sweep_interval=60))
    app = build_http_app(runtime)
    await runtime.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")
    fake_slack.mode = "http"
    fake_slack.events = client
    try:
        key = await runtime.access.create_agent_key("deploy-bot")
        headers = {"Authorization": f"Bearer {key}"}
        created = await client.post(
            "/v1/approvals",
            headers=headers,
            json={"action": "deploy.web", "title": "Deploy <!channel> web"},
        )
        assert created.status_code == 201
        request_id = created.json()["id"]

        async def card_posted():
            return fake_slack.posts_in(CHANNEL)

        [card] = await wait_for(card_posted)
        assert "<!channel>" not in card.all_text

        poll = asyncio.create_task(
            client.get(f"/v1/approvals/{request_id}?wait=30", headers=headers)
        )
        ack = await fake_slack.click(card, user=ALICE, action_id="signoff_approve")
        assert ack["status"] == 200
        answered = await asyncio.wait_for(poll, timeout=30)
        assert answered.json()["status"] == "approved"
        assert answered.json()["decision"]["platform"] == "slack"

        async def card_shows_the_outcome():
            [current] = fake_slack.posts_in(CHANNEL)
            return not current.buttons and "Approved by alice" in current.all_text

        await wait_for(card_shows_the_outcome)
        ready = await client.get("/readyz")
        assert ready.json()["checks"]["slack"] == "ok"
    finally:
        await client.aclose()
        await runtime.stop()
