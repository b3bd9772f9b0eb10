"""Telegram in the whole application: config to adapter, agent API to card, click to agent.

The runtime is built from a config file's text, exactly as `signoff serve` builds it; the
real python-telegram-bot long-polls the fake Bot API, and a button press travels back
through getUpdates.
"""

from __future__ import annotations

import asyncio

import httpx

from bot.app import AppOptions, build_runtime
from bot.http import build_http_app
from config import load_config_text
from tests.adapters.telegram.conftest import ALICE, GROUP
from tests.fakes.telegram import TOKEN

CONFIG = """\
version: 1
database: {{url: "sqlite:///{db}"}}
people:
  alice: {{telegram: 100001}}
  bob: {{telegram: 100002}}
channels:
  ops-telegram: {{telegram: -1001234}}
platforms:
  telegram:
    bot_token: "${{TELEGRAM_BOT_TOKEN}}"
    mode: polling
    api_url: "{api_url}"
agents:
  deploy-bot: {{}}
policies:
  - name: default
    levels: [{{approvers: [alice, bob], notify: [ops-telegram, web], timeout: 30m}}]
"""


async def test_agent_request_is_approved_by_a_button_in_telegram(tmp_path, fake):
    config = load_config_text(
        CONFIG.format(db=tmp_path / "app.db", api_url=fake.base_url),
        "signoff.yaml",
        environ={"TELEGRAM_BOT_TOKEN": TOKEN},
    )
    runtime = build_runtime(config, AppOptions(sweep_interval=60))
    app = build_http_app(runtime)
    await runtime.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")
    try:
        key = await runtime.access.create_agent_key("deploy-bot")
        headers = {"Authorization": f"Bearer {key}"}
        created = await client.post(
            "/v1/approvals",
            headers=headers,
            json={"action": "deploy.web", "title": "Deploy <b>web</b> @everyone"},
        )
        assert created.status_code == 201
        request_id = created.json()["id"]
        card = await fake.until(lambda: fake.card_for(request_id, GROUP))
        assert "<b>web</b>" in card.text  # shown as text, not markup

        poll = asyncio.create_task(
            client.get(f"/v1/approvals/{request_id}?wait=30", headers=headers)
        )
        update = await fake.click(ALICE, card, card.button_data("Approve"))
        answered = await asyncio.wait_for(poll, timeout=30)
        assert answered.json()["status"] == "approved"
        assert answered.json()["decision"]["platform"] == "telegram"
        assert await fake.until(lambda: fake.answer_to(update))

        def card_final():
            current = fake.card_for(request_id, GROUP)
            return current is not None and not current.buttons() and "alice" in current.text

        await fake.until(card_final)
    finally:
        await client.aclose()
        await runtime.stop()
